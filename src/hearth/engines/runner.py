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

Within a lane, work is served first come, first served: every step carries
the time its request was admitted, and a free thread takes the oldest
request's next step. A request that has started is therefore finished before
later ones take its thread (a queue of short requests completes one by one,
not all at the end together), while a step a request is not ready for yet
(its client still reading) leaves the thread to the next request. One
exception keeps streams quick to start: a stream's first item runs ahead of
other requests' later steps, then the stream takes its place in line. Work
that can be long (a moderation of a whole book) runs in several calls and
yields its turn between them, letting the requests behind it interleave.

Streams are pulled one item at a time on the model's threads, and a consumer
that stops (a client that disconnected) closes the generator, which stops
the work at its next item.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from concurrent.futures import Future
from contextlib import suppress
from enum import IntEnum
from typing import Any, Self, TypeVar

from hearth import metrics

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


_admitted = itertools.count()


class Admission:
    """A request's place at one model, from before its response starts until it ends.

    ``turn`` orders its steps behind those of requests admitted earlier.
    """

    def __init__(self, release: Callable[[], None], lane: Lane) -> None:
        self.lane = lane
        self.turn = next(_admitted)
        self._release: Callable[[], None] | None = release

    def yield_turn(self) -> None:
        """Go to the back of the line: steps of requests admitted until now run before this one's
        next. Long work done in several calls yields between them, so it cannot hold a model for
        its whole length."""
        self.turn = next(_admitted)

    def release(self) -> None:
        """Give the place back; safe to call more than once."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


# Where a step stands in line: its lane, then a stream's first item, then its request's turn.
Priority = tuple[int, int, int]
_FIRST_ITEM, _LATER = 0, 1


def _priority(admission: Admission, *, first_item: bool = False) -> Priority:
    return int(admission.lane), _FIRST_ITEM if first_item else _LATER, admission.turn


class _PriorityExecutor:
    """Worker threads that take the most urgent lane's oldest request's task first."""

    def __init__(self, name: str, workers: int) -> None:
        self._tasks: queue.PriorityQueue[tuple[Priority, int, Callable[[], None] | None]] = \
            queue.PriorityQueue()
        self._queued = metrics.MODEL_QUEUED.labels(name)
        self._busy = metrics.MODEL_BUSY.labels(name)
        self._order = itertools.count()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"hearth-{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: Priority, fn: Callable[[], T]) -> Future[T]:
        if self._closed:
            raise RuntimeError("the model runner is shut down")
        future: Future[T] = Future()

        def task() -> None:
            self._queued.dec()
            if not future.set_running_or_notify_cancel():
                return
            self._busy.inc()
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 (handed to whoever awaits the future)
                future.set_exception(exc)
            finally:
                self._busy.dec()

        self._queued.inc()
        self._tasks.put((priority, next(self._order), task))
        return future

    def _work(self) -> None:
        while (task := self._tasks.get()[2]) is not None:
            task()

    def shutdown(self) -> None:
        self._closed = True
        # Stops the threads after the task each is running; queued tasks never start.
        for _ in self._threads:
            self._tasks.put(((-1, 0, 0), next(self._order), None))


class _Pump:
    """Pulls an iterator on the executor's threads, up to ``AHEAD`` items ahead of its consumer.

    Each step, on its worker thread, queues the next one before the thread
    looks for other work, so a request keeps its place in line between items
    instead of losing it while its consumer wakes up. A consumer that stops
    has the iterator closed on a worker thread, after the step in progress.
    """

    AHEAD = 2

    def __init__(self, executor: _PriorityExecutor, iterator: Iterator[Any], first: Priority,
                 later: Priority, loop: asyncio.AbstractEventLoop) -> None:
        self._executor = executor
        self._iterator = iterator
        self._priority = first
        self._later = later
        self._loop = loop
        self._outcomes: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
        self._lock = threading.Lock()
        self._ahead = 0  # items produced and not yet taken by the consumer
        self._queued = False  # a step is queued or running
        self._closing = False
        self._finished = False
        with self._lock:
            self._schedule()

    async def items(self) -> AsyncGenerator[Any, None]:
        while True:
            ok, value = await self._outcomes.get()
            if not ok:
                raise value
            if value is _DONE:
                return
            with self._lock:
                self._ahead -= 1
                self._schedule()
            yield value

    def close(self) -> None:
        """The consumer is gone: close the iterator once no step is inside it."""
        with self._lock:
            self._closing = True
            self._schedule()

    def _schedule(self) -> None:
        """Queue the next step if one is due; the caller holds the lock."""
        if self._queued or self._finished or (self._ahead >= self.AHEAD and not self._closing):
            return
        self._queued = True
        try:
            self._executor.submit(self._priority, self._step)
        except RuntimeError:  # shut down: nothing will run it
            self._queued, self._finished = False, True

    def _step(self) -> None:
        """One item, or the close; runs on a worker thread and never raises."""
        with self._lock:
            closing = self._closing
        if closing:
            with suppress(Exception):
                close = getattr(self._iterator, "close", None)
                if close is not None:
                    close()
            with self._lock:
                self._queued, self._finished = False, True
            return
        try:
            outcome: tuple[bool, Any] = (True, next(self._iterator, _DONE))
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer)
            outcome = (False, exc)
        with self._lock:
            self._queued = False
            self._priority = self._later
            if not outcome[0] or outcome[1] is _DONE:
                self._finished = True
            else:
                self._ahead += 1
            with suppress(RuntimeError):  # the loop is closed: nobody is waiting
                self._loop.call_soon_threadsafe(self._outcomes.put_nowait, outcome)
            self._schedule()


class ModelRunner:
    def __init__(self, name: str, *, workers: int = 1, queue_depth: int = 64) -> None:
        self.name = name
        self.workers = workers
        self.queue_depth = queue_depth
        self._executor = _PriorityExecutor(name, workers)
        self._online = 0
        # Background work holds at most one place per thread, so it never fills the queue.
        self._background = asyncio.Semaphore(workers)
        self._background_held = 0
        # When a request last came or went (monotonic): idle models are unloaded by it.
        self.last_used = time.monotonic()
        self.closed = False
        metrics.MODEL_THREADS.labels(name).set(workers)
        metrics.MODEL_CAPACITY.labels(name).set(workers + queue_depth)
        self._in_flight = {lane: metrics.MODEL_ADMITTED.labels(name, lane.name) for lane in Lane}

    @property
    def admitted(self) -> int:
        """Online requests in progress or waiting."""
        return self._online

    @property
    def in_flight(self) -> int:
        """Requests, online and background, holding a place: a model with any is never unloaded."""
        return self._online + self._background_held

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def admit(self) -> Admission:
        """A place for an online request, or ``ModelBusy`` at once when the queue is full."""
        if self._online >= self.workers + self.queue_depth:
            metrics.MODEL_REFUSED.labels(self.name).inc()
            raise ModelBusy(self.name, self._online)
        self._online += 1
        self.touch()
        in_flight = self._in_flight[Lane.online]
        in_flight.inc()

        def release() -> None:
            self._online -= 1
            self.touch()
            in_flight.dec()

        return Admission(release, Lane.online)

    async def admit_background(self) -> Admission:
        """A place for background work, waiting for one as long as it takes."""
        await self._background.acquire()
        self._background_held += 1
        self.touch()
        in_flight = self._in_flight[Lane.background]
        in_flight.inc()

        def release() -> None:
            in_flight.dec()
            self._background_held -= 1
            self.touch()
            self._background.release()

        return Admission(release, Lane.background)

    async def run(self, fn: Callable[..., T], /, *args: Any, admission: Admission | None = None,
                  **kwargs: Any) -> T:
        """Run ``fn`` on the model's threads: in the lane of the caller's ``admission``, which
        stays the caller's to release, or admitted just for this call."""
        call = functools.partial(fn, *args, **kwargs)
        if admission is not None:
            return await asyncio.wrap_future(self._executor.submit(_priority(admission), call))
        with self.admit() as own:
            return await asyncio.wrap_future(self._executor.submit(_priority(own), call))

    async def stream(self, make: Callable[[], Iterator[T]], *,
                     admission: Admission | None = None) -> AsyncGenerator[T, None]:
        """Drive the iterator ``make()`` returns on the model's threads, item by item.

        The stream takes over ``admission`` (or admits itself) and releases it
        when it ends, however it ends.
        """
        with admission or self.admit() as held:
            first = _priority(held, first_item=True)
            iterator = await asyncio.wrap_future(self._executor.submit(first, make))
            pump = _Pump(self._executor, iterator, first, _priority(held), asyncio.get_running_loop())
            try:
                async for item in pump.items():
                    yield item
            finally:
                pump.close()

    def shutdown(self, *, forget_metrics: bool = True) -> None:
        self.closed = True
        self._executor.shutdown()
        if not forget_metrics:
            return
        # An unloaded model leaves the metrics (a reload brings it back).
        per_model = [(self.name,)]
        per_lane = [(self.name, lane.name) for lane in Lane]
        gauges = (metrics.MODEL_THREADS, metrics.MODEL_CAPACITY, metrics.MODEL_QUEUED, metrics.MODEL_BUSY,
                  metrics.MODEL_ADMITTED)
        for gauge in gauges:
            for values in per_lane if gauge is metrics.MODEL_ADMITTED else per_model:
                with suppress(KeyError):
                    gauge.remove(*values)
