"""Runs queued jobs on the event loop: claim, heartbeat, settle.

A ``Worker`` claims up to ``concurrency`` jobs of the kinds it has handlers
for and runs each handler as a task. Beside each handler a heartbeat renews
the lease every third of its length; when it finds the lease lost (another
worker took the job over) or a cancel requested, it cancels the handler.
What the handler did then decides the job's fate:

- returned: succeeded, with the returned dict as result;
- raised ``PermanentJobError``: failed, no retry;
- raised anything else: failed, retried after an exponential backoff while
  attempts are left;
- cancelled on request: cancelled; cancelled because the lease was lost:
  nothing, the job is no longer ours to settle.

Stopping the worker stops claiming, cancels the running handlers and releases
their jobs, so another worker starts them at once rather than after their
lease runs out. Every database call runs in a thread: the loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from hearth import logs
from hearth.jobs.queue import ClaimedJob, JobQueue, Lease

log = logging.getLogger("hearth.jobs")

# An async function: what it returns becomes the job's result.
Handler = Callable[["JobContext"], Coroutine[Any, Any, dict[str, Any] | None]]


class PermanentJobError(Exception):
    """Raised by a handler for a failure that retrying cannot fix (bad input, missing file)."""


class _StopReason(enum.Enum):
    """Why the worker stopped a handler before it returned."""

    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


@dataclass
class _Execution:
    """One claimed job being run: its handler's task and, once it must stop early, why."""

    job: ClaimedJob
    handler: asyncio.Task[dict[str, Any] | None] | None = None  # set by Worker._start, with the context
    stop_reason: _StopReason | None = None

    def stop(self, reason: _StopReason) -> None:
        # The first reason wins: a shutdown after a cancel request still ends as cancelled.
        if self.stop_reason is None:
            self.stop_reason = reason
            if self.handler is not None:
                self.handler.cancel()


class JobContext:
    """What a handler sees of its job, and how it records progress.

    ``progress`` is what earlier attempts saved (empty on the first), so a
    handler resumes from it. Work a handler runs in threads cannot be
    cancelled from the loop; such work should check ``stop_requested``
    between steps.
    """

    def __init__(self, execution: _Execution, queue: JobQueue, worker_id: str) -> None:
        job = execution.job
        self.job_id = job.id
        self.kind = job.kind
        self.payload = job.payload
        self.project_id = job.project_id
        self.attempt = job.attempt
        self.progress: dict[str, Any] = dict(job.progress)
        self._execution = execution
        self._queue = queue
        self._worker_id = worker_id

    @property
    def stop_requested(self) -> bool:
        """True once the worker has asked the handler to stop, for whatever reason."""
        return self._execution.stop_reason is not None

    @property
    def cancel_requested(self) -> bool:
        return self._execution.stop_reason is _StopReason.CANCEL_REQUESTED

    async def save_progress(self, progress: dict[str, Any]) -> None:
        """Persist progress for a later attempt; if the lease turns out lost, the handler is cancelled."""
        saved = await asyncio.to_thread(self._queue.save_progress, self.job_id, self._worker_id, progress)
        if saved:
            self.progress = dict(progress)
        else:
            self._execution.stop(_StopReason.LEASE_LOST)


def default_worker_id() -> str:
    """Host, process and a random suffix: unique per Worker, and telling where it runs."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class Worker:
    """Claims and runs jobs of the kinds in ``handlers`` until its stop event is set."""

    def __init__(self, queue: JobQueue, handlers: Mapping[str, Handler], *, worker_id: str | None = None,
                 concurrency: int = 2, lease_seconds: float = 30.0, poll_interval: float = 0.5,
                 retry_base_seconds: float = 5.0, retry_max_seconds: float = 600.0) -> None:
        self.worker_id = worker_id or default_worker_id()
        self._queue = queue
        self._handlers = dict(handlers)
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then release what is still running.

        Cancelling this task also releases running jobs, but a claim in flight
        at that moment is lost until its lease expires; prefer the event.
        """
        running: dict[asyncio.Task[None], _Execution] = {}
        stopping = asyncio.create_task(stop.wait())
        # A job enqueued in this process wakes the worker at once; others are found by polling.
        enqueued = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: this worker has stopped
                loop.call_soon_threadsafe(enqueued.set)

        forget = self._queue.on_enqueued(wake)
        try:
            while not stop.is_set():
                enqueued.clear()
                await self._fill(running, stop)
                woken = asyncio.create_task(enqueued.wait())
                await asyncio.wait({stopping, woken, *running}, timeout=self._poll_interval,
                                   return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                for task in [task for task in running if task.done()]:
                    del running[task]
        finally:
            forget()
            stopping.cancel()
            for execution in running.values():
                execution.stop(_StopReason.SHUTDOWN)
            await asyncio.gather(*running, return_exceptions=True)

    async def _fill(self, running: dict[asyncio.Task[None], _Execution], stop: asyncio.Event) -> None:
        """Enqueue due periodic jobs, then claim jobs until every slot is busy or none is due."""
        kinds = list(self._handlers)
        try:
            await asyncio.to_thread(self._queue.enqueue_due_schedules, kinds)
            while len(running) < self._concurrency and not stop.is_set():
                job = await asyncio.to_thread(self._queue.claim, kinds, self.worker_id, self._lease_seconds)
                if job is None:
                    return
                execution = _Execution(job)
                running[self._start(execution)] = execution
        except Exception:
            # The database may be briefly unreachable; the next poll tries again.
            log.exception("worker %s could not poll the job queue", self.worker_id)

    def _start(self, execution: _Execution) -> asyncio.Task[None]:
        """Start the handler and the task that watches over it, together, so a stop always finds the handler."""
        job = execution.job
        # The job's log lines (the handler's and the worker's about it) name the job and its project.
        context = contextvars.copy_context()
        context.run(logs.context.set, {"job_id": job.id, "job_kind": job.kind,
                                       **({"project_id": job.project_id} if job.project_id else {})})
        handler = asyncio.create_task(self._handlers[job.kind](JobContext(execution, self._queue, self.worker_id)),
                                      context=context)
        execution.handler = handler
        return asyncio.create_task(self._execute(execution, handler), context=context)

    async def _execute(self, execution: _Execution, handler: asyncio.Task[dict[str, Any] | None]) -> None:
        job = execution.job
        heartbeat = asyncio.create_task(self._heartbeat(execution))
        try:
            await self._settle(execution, handler)
        except Exception:
            # Settling failed (database unreachable): the lease expires and another attempt follows.
            log.exception("could not record the outcome of job %s", job.id)
        finally:
            heartbeat.cancel()

    async def _settle(self, execution: _Execution, handler: asyncio.Task[dict[str, Any] | None]) -> None:
        job = execution.job
        try:
            result = await handler
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                # This task itself is being cancelled: the worker is going away without its stop event.
                execution.stop(_StopReason.SHUTDOWN)
                await self._settle_stopped(execution)
                raise
            if execution.stop_reason is None:
                await self._fail(job, "the handler was cancelled by something other than its worker", retry=True)
            else:
                await self._settle_stopped(execution)
        except PermanentJobError as exc:
            log.warning("job %s (%s) failed permanently: %s", job.id, job.kind, exc)
            await self._fail(job, _describe(exc), retry=False)
        except Exception as exc:
            log.exception("job %s (%s) failed on attempt %d of %d", job.id, job.kind, job.attempt, job.max_attempts)
            await self._fail(job, _describe(exc), retry=True)
        else:
            if not await asyncio.to_thread(self._queue.succeed, job.id, self.worker_id, result):
                log.warning("job %s finished after its lease was lost; its result is dropped", job.id)

    async def _fail(self, job: ClaimedJob, error: str, *, retry: bool) -> None:
        # Exponential backoff: base, 2 x base, 4 x base ... up to the maximum.
        retry_in = min(self._retry_base * 2 ** (job.attempt - 1), self._retry_max) if retry else None
        await asyncio.to_thread(self._queue.fail, job.id, self.worker_id, error, retry_in=retry_in)

    async def _settle_stopped(self, execution: _Execution) -> None:
        """Record why a handler was stopped early: cancelled, handed back, or (lease lost) nothing."""
        job = execution.job
        if execution.stop_reason is _StopReason.CANCEL_REQUESTED:
            await asyncio.to_thread(self._queue.mark_cancelled, job.id, self.worker_id)
        elif execution.stop_reason is _StopReason.SHUTDOWN:
            await asyncio.to_thread(self._queue.release, job.id, self.worker_id)
        else:
            log.warning("job %s was stopped here because this worker lost its lease", job.id)

    async def _heartbeat(self, execution: _Execution) -> None:
        """Renew the lease until the handler ends; stop the handler on a cancel request or a lost lease."""
        job = execution.job
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                lease = await asyncio.to_thread(self._queue.heartbeat, job.id, self.worker_id, self._lease_seconds)
            except Exception:
                log.warning("heartbeat for job %s failed; retrying", job.id, exc_info=True)
                continue
            if lease is Lease.CANCEL_REQUESTED:
                execution.stop(_StopReason.CANCEL_REQUESTED)
                return
            if lease is Lease.LOST:
                execution.stop(_StopReason.LEASE_LOST)
                return


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
