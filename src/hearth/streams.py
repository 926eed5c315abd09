"""Helpers for async streams that services hand to whoever consumes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Generic, Self, TypeVar

T = TypeVar("T")


class Primed(Generic[T]):
    """A stream whose first item is already in hand.

    Closing it closes the rest at once, even before the first item is read,
    so cleanup (metering, releasing a model's place) never waits for the
    garbage collector.
    """

    def __init__(self, rest: AsyncIterator[T], first: T | None = None, *, empty: bool = False) -> None:
        self._rest = rest
        self._first = first
        self._pending = not empty

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._pending:
            self._pending = False
            return self._first  # type: ignore[return-value]
        return await anext(self._rest)

    async def aclose(self) -> None:
        self._pending = False
        close = getattr(self._rest, "aclose", None)
        if close is not None:
            await close()


async def prime(stream: AsyncIterator[T]) -> Primed[T]:
    """Pull the first item now, so a refusal raises before any byte is sent."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return Primed(stream, empty=True)
    return Primed(stream, first)
