"""Runs blocking model calls off the event loop, one queue per model, online work first.

Engines are plain synchronous classes. A ``ModelRunner`` owns the threads one
model runs on. Work reaches them in two lanes:

- online: a client is waiting. A request is admitted once, before its
  response starts, and holds its place until it ends; past ``queue_depth``
  waiting requests it is refused at once (``ModelBusy``, which services turn
  into a 429) rather than queued without bound, so a client gets a whole
  answer or a clear refusal, never a response cut off midway.
- background: a job (a batch line, say) with no client waiting. It is never
  refused: it waits for one of a few background places, and its steps run
  only when no online step is waiting, so jobs never starve online requests.

Streams are pulled one item at a time on the model's threads, so requests
sharing a model take turns item by item (sentence, segment, token chunk), and
a consumer that stops (a client that disconnected) closes the generator,
which stops the work at its next item.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future
from contextlib import suppress
from enum import IntEnum
from typing import Any, Self, TypeVar

T = TypeVar("T")
_DONE = object()


class ModelBusy(Exception):
    """The model's online queue is full: the request is refused, not queued."""

    def __init__(self, model: str, admitted: int) -> None:
        super().__init__(f"Model {model} is at capacity ({admitted} requests in progress or "
                         "queued). Please retry shortly.")


class Lane(IntEnum):
    """Who is waiting for the work; a lower value runs first."""

    online = 0
    background = 1


class Admission:
    """A request's place at one model, from before its response starts until it ends."""

    def __init__(self, release: Callable[[], None], lane: Lane) -> None:
        self.lane = lane
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        """Give the place back; safe to call more than once."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class _PriorityExecutor:
    """Worker threads that take the most urgent lane's oldest task first."""

    def __init__(self, name: str, workers: int) -> None:
        self._tasks: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = \
            queue.PriorityQueue()
        self._order = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"hearth-{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, lane: Lane, fn: Callable[[], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the model runner is shut down")
        future: Future[T] = Future()

        def task() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 (handed to whoever awaits the future)
                future.set_exception(exc)

        self._tasks.put((int(lane), next(self._order), task))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()[2]) is not None:
            task()

    def shutdown(self) -> None:
        self._closed = True
        # Stops the threads after the task each is running; queued tasks never start.
        for _ in self._threads:
            self._tasks.put((-1, next(self._order), None))


class ModelRunner:
    def __init__(self, name: str, *, workers: int = 1, queue_depth: int = 64) -> None:
        self.name = name
        self.workers = workers
        self.queue_depth = queue_depth
        self._executor = _PriorityExecutor(name, workers)
        self._online = 0
        # Background work holds at most one place per thread, so it never fills the queue.
        self._background = asyncio.Semaphore(workers)

    @property
    def admitted(self) -> int:
        """Online requests in progress or waiting."""
        return self._online

    def admit(self) -> Admission:
        """A place for an online request, or ``ModelBusy`` at once when the queue is full."""
        if self._online >= self.workers + self.queue_depth:
            raise ModelBusy(self.name, self._online)
        self._online += 1

        def release() -> None:
            self._online -= 1

        return Admission(release, Lane.online)

    async def admit_background(self) -> Admission:
        """A place for background work, waiting for one as long as it takes."""
        await self._background.acquire()
        return Admission(self._background.release, Lane.background)

    async def run(self, fn: Callable[..., T], /, *args: Any, admission: Admission | None = None,
                  **kwargs: Any) -> T:
        """Run ``fn`` on the model's threads: in the lane of the caller's ``admission``, which
        stays the caller's to release, or admitted just for this call."""
        call = functools.partial(fn, *args, **kwargs)
        if admission is not None:
            return await asyncio.wrap_future(self._executor.submit(admission.lane, call))
        with self.admit() as own:
            return await asyncio.wrap_future(self._executor.submit(own.lane, call))

    async def stream(self, make: Callable[[], Iterator[T]], *,
                     admission: Admission | None = None) -> AsyncGenerator[T, None]:
        """Drive the iterator ``make()`` returns on the model's threads, item by item.

        The stream takes over ``admission`` (or admits itself) and releases it
        when it ends, however it ends.
        """
        with admission or self.admit() as held:
            iterator = await asyncio.wrap_future(self._executor.submit(held.lane, make))
            step: Future[Any] | None = None
            try:
                while True:
                    step = self._executor.submit(held.lane, functools.partial(next, iterator, _DONE))
                    item = await asyncio.wrap_future(step)
                    if item is _DONE:
                        return
                    yield item
            finally:
                self._close_after(iterator, step, held.lane)

    def _close_after(self, iterator: Iterator[Any], step: Future[Any] | None, lane: Lane) -> None:
        close = getattr(iterator, "close", None)
        if close is None:
            return

        # Not awaited: the consumer may be gone. A generator cannot be closed
        # while a thread is inside next(), so the close follows that step.
        def close_after(_: object) -> None:
            with suppress(RuntimeError):  # shut down: nothing left to stop
                self._executor.submit(lane, close)

        if step is None:
            close_after(None)
        else:
            step.add_done_callback(close_after)

    def shutdown(self) -> None:
        self._executor.shutdown()
