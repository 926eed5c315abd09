"""List endpoints' shared query parameters and envelope.

``page_params(default_limit, max_limit)`` is a dependency each list route
configures with its documented bounds; ``ListResponse[T]`` is the
``{"object": "list", "data", "first_id", "last_id", "has_more"}`` envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel

from hearth.errors import InvalidRequest
from hearth.store.pagination import Order, PageRequest, UnknownCursor

T = TypeVar("T", bound=BaseModel)


class ListResponse(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, items: Sequence[T], has_more: bool) -> ListResponse[T]:
        ids = [item.id for item in items]  # type: ignore[attr-defined]
        return cls(data=list(items), first_id=ids[0] if ids else None,
                   last_id=ids[-1] if ids else None, has_more=has_more)


def page_params(default_limit: int = 20, max_limit: int = 100) -> Callable[..., PageRequest]:
    def dependency(
        limit: Annotated[int, Query()] = default_limit,
        order: Annotated[Order, Query()] = "desc",
        after: Annotated[str | None, Query()] = None,
        before: Annotated[str | None, Query()] = None,
    ) -> PageRequest:
        if not 1 <= limit <= max_limit:
            raise InvalidRequest(
                f"Invalid 'limit': must be between 1 and {max_limit}, got {limit}.",
                param="limit", code="integer_out_of_range")
        # An empty cursor (`?after=`) is no cursor, as clients that always send one expect.
        return PageRequest(limit=limit, order=order, after=after or None, before=before or None)

    return dependency


def unknown_cursor(exc: UnknownCursor) -> InvalidRequest:
    return InvalidRequest(f"Invalid '{exc.param}': no object with id '{exc.object_id}' "
                          "in this listing.", param=exc.param)
