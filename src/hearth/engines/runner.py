"""Runs blocking model calls off the event loop, with a bounded queue per model.

Engines are plain synchronous classes. A ``ModelRunner`` owns the threads one
model runs on and admits at most ``queue_depth`` waiting requests; past that
a request is refused at once (429) rather than queued without bound.

Streams are pulled one item at a time through the executor, so requests
sharing a model take turns item by item (sentence, segment, token chunk), and
a consumer that stops (a client that disconnected) closes the generator,
which stops the work at its next item.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from hearth.api.errors import RateLimited

T = TypeVar("T")
_DONE = object()


class ModelRunner:
    def __init__(self, name: str, *, workers: int = 1, queue_depth: int = 64) -> None:
        self.name = name
        self.workers = workers
        self.queue_depth = queue_depth
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"hearth-{name}")
        self._admitted = 0

    @contextmanager
    def _admission(self) -> Iterator[None]:
        if self._admitted >= self.workers + self.queue_depth:
            raise RateLimited(
                f"Model {self.name} is at capacity ({self._admitted} requests in progress "
                "or queued). Please retry shortly.",
                code="model_overloaded",
            )
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        with self._admission():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def stream(self, make: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
        """Drive the iterator ``make()`` returns on the model's threads, item by item."""
        with self._admission():
            loop = asyncio.get_running_loop()
            iterator = await loop.run_in_executor(self._executor, make)
            step: Future[Any] | None = None
            try:
                while True:
                    step = self._executor.submit(next, iterator, _DONE)
                    item = await asyncio.wrap_future(step)
                    if item is _DONE:
                        return
                    yield item
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    # Not awaited: the consumer may be gone. A generator cannot be closed
                    # while a thread is inside next(), so the close follows that step.
                    def close_after(_: object) -> None:
                        with suppress(RuntimeError):  # shut down: nothing left to stop
                            self._executor.submit(close)

                    if step is None:
                        close_after(None)
                    else:
                        step.add_done_callback(close_after)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
