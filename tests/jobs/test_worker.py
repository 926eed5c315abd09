"""The asyncio worker in this process: outcomes, retries, cancellation, lease loss, shutdown.

Leases are a few tenths of a second so heartbeats happen within each test;
the assertions wait for states, never for durations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from hearth.jobs import Handler, JobContext, JobQueue, JobSnapshot, JobStatus, PermanentJobError, Worker
from hearth.store.db import Database

LEASE = 0.3
DEADLINE = 30.0


@pytest.fixture
def live_queue(db: Database) -> JobQueue:
    return JobQueue(db)


@asynccontextmanager
async def running(queue: JobQueue, handlers: dict[str, Handler], **options: Any) -> AsyncIterator[Worker]:
    """A worker running in the background of the test, stopped (gracefully) on exit."""
    worker = Worker(queue, handlers, lease_seconds=LEASE, poll_interval=0.02, retry_base_seconds=0.01, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def settled(queue: JobQueue, job_id: str) -> JobSnapshot:
    """The job once it has reached a final status."""
    final = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    snapshot = queue.get(job_id)
    deadline = time.monotonic() + DEADLINE
    while snapshot is None or snapshot.status not in final:
        assert time.monotonic() < deadline, f"job did not settle: {snapshot}"
        await asyncio.sleep(0.01)
        snapshot = await asyncio.to_thread(queue.get, job_id)
    return snapshot


def test_handler_result_becomes_the_jobs_result(live_queue: JobQueue) -> None:
    async def echo(ctx: JobContext) -> dict[str, Any]:
        return {"echo": ctx.payload["text"], "project": ctx.project_id, "attempt": ctx.attempt}

    async def scenario() -> None:
        job_id = live_queue.enqueue("echo", {"text": "hi"}, project_id="proj_1")
        async with running(live_queue, {"echo": echo}):
            job = await settled(live_queue, job_id)
        assert (job.status, job.result) == (JobStatus.SUCCEEDED, {"echo": "hi", "project": "proj_1", "attempt": 1})

    asyncio.run(scenario())


def test_failure_is_retried_and_the_retry_resumes_from_progress(live_queue: JobQueue) -> None:
    seen: list[tuple[int, dict[str, Any]]] = []

    async def flaky(ctx: JobContext) -> dict[str, Any]:
        seen.append((ctx.attempt, dict(ctx.progress)))
        if ctx.attempt == 1:
            await ctx.save_progress({"step": 1})
            raise OSError("transient")
        return {"resumed_at": ctx.progress["step"]}

    async def scenario() -> None:
        job_id = live_queue.enqueue("flaky", {})
        async with running(live_queue, {"flaky": flaky}):
            job = await settled(live_queue, job_id)
        assert (job.status, job.attempts, job.result) == (JobStatus.SUCCEEDED, 2, {"resumed_at": 1})
        assert job.last_error == "OSError: transient"
        assert seen == [(1, {}), (2, {"step": 1})]

    asyncio.run(scenario())


def test_permanent_error_is_not_retried(live_queue: JobQueue) -> None:
    async def broken(ctx: JobContext) -> None:
        raise PermanentJobError("line 3 is not JSON")

    async def scenario() -> None:
        job_id = live_queue.enqueue("broken", {}, max_attempts=5)
        async with running(live_queue, {"broken": broken}):
            job = await settled(live_queue, job_id)
        assert (job.status, job.attempts, job.last_error) == (
            JobStatus.FAILED, 1, "PermanentJobError: line 3 is not JSON")

    asyncio.run(scenario())


def test_cancel_stops_a_running_handler(live_queue: JobQueue) -> None:
    started = asyncio.Event()
    stopped: list[bool] = []

    async def endless(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(ctx.cancel_requested)

    async def scenario() -> None:
        job_id = live_queue.enqueue("endless", {})
        async with running(live_queue, {"endless": endless}):
            await asyncio.wait_for(started.wait(), DEADLINE)
            assert await asyncio.to_thread(live_queue.cancel, job_id) is JobStatus.RUNNING
            job = await settled(live_queue, job_id)
        assert job.status is JobStatus.CANCELLED
        assert stopped == [True]

    asyncio.run(scenario())


def test_handler_stops_when_another_worker_takes_its_job(db: Database, live_queue: JobQueue) -> None:
    started = asyncio.Event()
    stopped: list[bool] = []

    async def endless(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(ctx.stop_requested)

    # A worker whose clock runs ahead sees the lease as expired and takes the job over.
    ahead = JobQueue(db, now=lambda: time.time() + 3600)

    async def scenario() -> None:
        job_id = live_queue.enqueue("endless", {})
        async with running(live_queue, {"endless": endless}):
            await asyncio.wait_for(started.wait(), DEADLINE)
            thief = await asyncio.to_thread(ahead.claim, ["endless"], "thief", 7200)
            assert thief is not None and thief.id == job_id
            await until(lambda: bool(stopped))
        job = live_queue.get(job_id)
        assert job is not None
        assert (job.status, job.lease_owner, job.attempts) == (JobStatus.RUNNING, "thief", 2)
        assert stopped == [True]

    asyncio.run(scenario())


def test_shutdown_releases_running_jobs_for_another_worker(live_queue: JobQueue) -> None:
    started = asyncio.Event()

    async def endless(ctx: JobContext) -> None:
        await ctx.save_progress({"i": 7})
        started.set()
        await asyncio.Event().wait()

    async def scenario() -> None:
        job_id = live_queue.enqueue("endless", {})
        async with running(live_queue, {"endless": endless}):
            await asyncio.wait_for(started.wait(), DEADLINE)
        job = live_queue.get(job_id)
        assert job is not None
        assert (job.status, job.attempts, job.lease_owner, job.progress) == (JobStatus.QUEUED, 0, None, {"i": 7})
        taken = live_queue.claim(["endless"], "next", 10)
        assert taken is not None and taken.id == job_id

    asyncio.run(scenario())


def test_concurrency_bounds_the_jobs_running_at_once(live_queue: JobQueue) -> None:
    active: set[str] = set()
    peak = 0

    async def busy(ctx: JobContext) -> None:
        nonlocal peak
        active.add(ctx.job_id)
        peak = max(peak, len(active))
        await asyncio.sleep(0.02)
        active.discard(ctx.job_id)

    async def scenario() -> None:
        job_ids = [live_queue.enqueue("busy", {}) for _ in range(8)]
        async with running(live_queue, {"busy": busy}, concurrency=3):
            jobs = [await settled(live_queue, job_id) for job_id in job_ids]
        assert {job.status for job in jobs} == {JobStatus.SUCCEEDED}
        assert 1 <= peak <= 3

    asyncio.run(scenario())


def test_schedules_of_its_kinds_are_run(live_queue: JobQueue) -> None:
    runs: list[dict[str, Any]] = []

    async def sweep(ctx: JobContext) -> None:
        runs.append(ctx.payload)

    async def scenario() -> None:
        live_queue.ensure_schedule("files-sweep", "sweep", 3600, {"scope": "files"})
        live_queue.ensure_schedule("unhandled", "not-mine", 3600)
        async with running(live_queue, {"sweep": sweep}):
            await until(lambda: bool(runs))
        assert runs == [{"scope": "files"}]
        # Only schedules this worker can run are ticked.
        assert live_queue.enqueue_due_schedules() != []

    asyncio.run(scenario())


def test_a_job_enqueued_in_this_process_wakes_the_worker(db: Database, live_queue: JobQueue) -> None:
    """The worker here polls once an hour: a job enqueued in its own transaction, or in a caller's
    once that commits, is claimed at once all the same."""
    done: list[int] = []

    async def note(ctx: JobContext) -> None:
        done.append(ctx.payload["n"])

    def enqueue_with_other_rows() -> None:
        with db.session() as session:
            live_queue.enqueue_in(session, "note", {"n": 2})

    async def scenario() -> None:
        worker = Worker(live_queue, {"note": note}, lease_seconds=LEASE, poll_interval=3600)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        await asyncio.to_thread(live_queue.enqueue, "note", {"n": 1})
        await until(lambda: done == [1])
        await asyncio.to_thread(enqueue_with_other_rows)
        await until(lambda: done == [1, 2])
        stop.set()
        await asyncio.wait_for(task, DEADLINE)

    asyncio.run(scenario())
