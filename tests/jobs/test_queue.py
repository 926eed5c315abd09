"""The job queue's semantics, on SQLite and PostgreSQL, with time moved by hand."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from hearth.jobs import JobQueue, JobStatus, Lease
from hearth.store.db import Database
from hearth.store.ids import new_id, now
from hearth.store.tables import Job, Organization
from tests.jobs.conftest import Clock

T = TypeVar("T")


def status(queue: JobQueue, job_id: str) -> JobStatus:
    snapshot = queue.get(job_id)
    assert snapshot is not None
    return snapshot.status


def in_lockstep(threads: int, call: Callable[[], T]) -> list[T]:
    """Run ``call`` on several threads released together, so they race for the same rows."""
    barrier = threading.Barrier(threads)

    def raced() -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: raced(), range(threads)))


def test_enqueue_claim_succeed(queue: JobQueue) -> None:
    job_id = queue.enqueue("echo", {"text": "hi"}, project_id="proj_1")
    assert status(queue, job_id) is JobStatus.QUEUED

    claimed = queue.claim(["echo"], "w1", lease_seconds=10)
    assert claimed is not None
    assert (claimed.id, claimed.kind, claimed.payload, claimed.project_id) == (job_id, "echo", {"text": "hi"}, "proj_1")
    assert (claimed.attempt, claimed.progress) == (1, {})
    assert queue.claim(["echo"], "w2", lease_seconds=10) is None

    assert queue.succeed(job_id, "w1", {"echoed": "hi"})
    done = queue.get(job_id)
    assert done is not None
    assert (done.status, done.result, done.attempts) == (JobStatus.SUCCEEDED, {"echoed": "hi"}, 1)
    assert (done.lease_owner, done.lease_expires_at) == (None, None)
    assert done.finished_at is not None


def test_claim_takes_due_jobs_of_its_kinds_oldest_first(queue: JobQueue, clock: Clock) -> None:
    later = queue.enqueue("echo", {}, run_at=clock() + 30)
    clock.advance(1)
    first = queue.enqueue("echo", {})
    clock.advance(1)
    second = queue.enqueue("echo", {})
    queue.enqueue("other", {})

    claimed = [queue.claim(["echo"], "w", lease_seconds=100) for _ in range(3)]
    assert [job.id if job else None for job in claimed] == [first, second, None]
    clock.advance(30)
    job = queue.claim(["echo"], "w", lease_seconds=100)
    assert job is not None and job.id == later


def test_retry_with_delay_then_fail_after_max_attempts(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("flaky", {}, max_attempts=2)

    first = queue.claim(["flaky"], "w", lease_seconds=10)
    assert first is not None and first.attempt == 1
    assert queue.fail(job_id, "w", "boom 1", retry_in=5)
    snapshot = queue.get(job_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.run_at, snapshot.last_error) == (JobStatus.QUEUED, clock() + 5, "boom 1")

    clock.advance(4)
    assert queue.claim(["flaky"], "w", lease_seconds=10) is None
    clock.advance(1)
    second = queue.claim(["flaky"], "w", lease_seconds=10)
    assert second is not None and second.attempt == 2

    assert queue.fail(job_id, "w", "boom 2", retry_in=5)
    snapshot = queue.get(job_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.attempts, snapshot.last_error) == (JobStatus.FAILED, 2, "boom 2")
    clock.advance(60)
    assert queue.claim(["flaky"], "w", lease_seconds=10) is None


def test_fail_without_retry_is_final(queue: JobQueue) -> None:
    job_id = queue.enqueue("bad", {}, max_attempts=5)
    assert queue.claim(["bad"], "w", lease_seconds=10) is not None
    assert queue.fail(job_id, "w", "unreadable input")
    assert status(queue, job_id) is JobStatus.FAILED


def test_expired_lease_is_reclaimed_with_its_progress(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("count", {"n": 10})
    assert queue.claim(["count"], "w1", lease_seconds=5) is not None
    assert queue.save_progress(job_id, "w1", {"i": 3})

    clock.advance(4.9)
    assert queue.claim(["count"], "w2", lease_seconds=5) is None
    clock.advance(0.2)
    taken = queue.claim(["count"], "w2", lease_seconds=5)
    assert taken is not None
    assert (taken.id, taken.attempt, taken.progress) == (job_id, 2, {"i": 3})


def test_stale_owner_cannot_touch_a_job_taken_over(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("count", {})
    assert queue.claim(["count"], "w1", lease_seconds=5) is not None
    clock.advance(6)
    assert queue.claim(["count"], "w2", lease_seconds=5) is not None

    assert queue.heartbeat(job_id, "w1", 5) is Lease.LOST
    assert not queue.save_progress(job_id, "w1", {"i": 99})
    assert not queue.succeed(job_id, "w1", {"by": "w1"})
    assert not queue.fail(job_id, "w1", "late", retry_in=1)
    assert not queue.release(job_id, "w1")

    assert queue.heartbeat(job_id, "w2", 5) is Lease.HELD
    assert queue.succeed(job_id, "w2", {"by": "w2"})
    snapshot = queue.get(job_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.result, snapshot.progress) == (JobStatus.SUCCEEDED, {"by": "w2"}, None)


def test_heartbeat_extends_the_lease(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("long", {})
    assert queue.claim(["long"], "w1", lease_seconds=5) is not None
    for _ in range(5):
        clock.advance(4)
        assert queue.heartbeat(job_id, "w1", 5) is Lease.HELD
        assert queue.claim(["long"], "w2", lease_seconds=5) is None


def test_lost_worker_on_its_last_attempt_fails_the_job(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("count", {}, max_attempts=1)
    assert queue.claim(["count"], "w1", lease_seconds=5) is not None
    clock.advance(6)
    assert queue.claim(["count"], "w2", lease_seconds=5) is None
    snapshot = queue.get(job_id)
    assert snapshot is not None
    assert (snapshot.status, snapshot.lease_owner) == (JobStatus.FAILED, None)
    assert snapshot.last_error is not None and "worker lost" in snapshot.last_error


def test_cancel_queued_job(queue: JobQueue) -> None:
    job_id = queue.enqueue("echo", {})
    assert queue.cancel(job_id) is JobStatus.CANCELLED
    assert queue.claim(["echo"], "w", lease_seconds=5) is None
    assert status(queue, job_id) is JobStatus.CANCELLED


def test_cancel_running_job_reaches_its_worker(queue: JobQueue) -> None:
    job_id = queue.enqueue("echo", {})
    assert queue.claim(["echo"], "w", lease_seconds=5) is not None
    assert queue.cancel(job_id) is JobStatus.RUNNING
    assert queue.heartbeat(job_id, "w", 5) is Lease.CANCEL_REQUESTED
    assert queue.mark_cancelled(job_id, "w")
    assert status(queue, job_id) is JobStatus.CANCELLED


def test_cancel_of_a_running_job_whose_worker_died(queue: JobQueue, clock: Clock) -> None:
    job_id = queue.enqueue("echo", {})
    assert queue.claim(["echo"], "w1", lease_seconds=5) is not None
    assert queue.cancel(job_id) is JobStatus.RUNNING
    clock.advance(6)
    assert queue.claim(["echo"], "w2", lease_seconds=5) is None
    assert status(queue, job_id) is JobStatus.CANCELLED


def test_cancel_of_finished_or_unknown_jobs_changes_nothing(queue: JobQueue) -> None:
    job_id = queue.enqueue("echo", {})
    assert queue.claim(["echo"], "w", lease_seconds=5) is not None
    assert queue.succeed(job_id, "w")
    assert queue.cancel(job_id) is JobStatus.SUCCEEDED
    assert queue.cancel("job_missing") is None


def test_release_hands_the_job_back_at_once_without_using_an_attempt(queue: JobQueue) -> None:
    job_id = queue.enqueue("echo", {}, max_attempts=1)
    assert queue.claim(["echo"], "w1", lease_seconds=100) is not None
    assert queue.save_progress(job_id, "w1", {"i": 2})
    assert queue.release(job_id, "w1")

    again = queue.claim(["echo"], "w2", lease_seconds=100)
    assert again is not None
    assert (again.id, again.attempt, again.progress) == (job_id, 1, {"i": 2})


def test_release_of_a_job_asked_to_cancel_cancels_it(queue: JobQueue) -> None:
    job_id = queue.enqueue("echo", {})
    assert queue.claim(["echo"], "w", lease_seconds=100) is not None
    queue.cancel(job_id)
    assert queue.release(job_id, "w")
    assert status(queue, job_id) is JobStatus.CANCELLED


def test_enqueue_in_shares_the_callers_transaction(queue: JobQueue, db: Database) -> None:
    org_id = new_id("org_")
    with pytest.raises(RuntimeError), db.session() as session:
        session.add(Organization(id=org_id, name="rolled back", created_at=now()))
        job_id = queue.enqueue_in(session, "echo", {})
        raise RuntimeError("the caller's work failed")
    assert queue.get(job_id) is None

    with db.session() as session:
        session.add(Organization(id=org_id, name="kept", created_at=now()))
        job_id = queue.enqueue_in(session, "echo", {})
    assert status(queue, job_id) is JobStatus.QUEUED


def test_concurrent_claims_take_each_job_once(queue: JobQueue) -> None:
    job_ids = {queue.enqueue("echo", {"n": n}) for n in range(24)}

    def drain() -> list[str]:
        taken = []
        while (job := queue.claim(["echo"], threading.current_thread().name, lease_seconds=100)) is not None:
            taken.append(job.id)
        return taken

    taken = [job_id for batch in in_lockstep(4, drain) for job_id in batch]
    assert sorted(taken) == sorted(job_ids)


def test_schedule_enqueues_once_per_tick(queue: JobQueue, clock: Clock) -> None:
    queue.ensure_schedule("sweep", "sweep", 60, {"scope": "files"})
    queue.ensure_schedule("sweep", "sweep", 60, {"scope": "files"})

    first = queue.enqueue_due_schedules()
    assert len(first) == 1
    job = queue.get(first[0])
    assert job is not None and (job.kind, job.payload) == ("sweep", {"scope": "files"})
    assert queue.enqueue_due_schedules() == []
    clock.advance(59)
    assert queue.enqueue_due_schedules() == []
    clock.advance(1)
    assert len(queue.enqueue_due_schedules()) == 1


def test_schedule_skips_missed_ticks_and_filters_by_kind(queue: JobQueue, clock: Clock) -> None:
    queue.ensure_schedule("sweep", "sweep", 60)
    assert queue.enqueue_due_schedules(kinds=["other"]) == []
    assert len(queue.enqueue_due_schedules(kinds=["sweep"])) == 1
    clock.advance(600)
    assert len(queue.enqueue_due_schedules()) == 1
    clock.advance(59)
    assert queue.enqueue_due_schedules() == []


def test_shortened_schedule_interval_applies_at_once(queue: JobQueue, clock: Clock) -> None:
    queue.ensure_schedule("sweep", "sweep", 3600)
    assert len(queue.enqueue_due_schedules()) == 1
    queue.ensure_schedule("sweep", "sweep", 60)
    clock.advance(60)
    assert len(queue.enqueue_due_schedules()) == 1


def test_racing_workers_enqueue_each_tick_once(queue: JobQueue, clock: Clock, db: Database) -> None:
    queue.ensure_schedule("sweep", "sweep", 60)
    for tick in range(10):
        enqueued = in_lockstep(2, queue.enqueue_due_schedules)
        assert sum(len(ids) for ids in enqueued) == 1, f"tick {tick}: {enqueued}"
        clock.advance(60)
    with db.session() as session:
        assert session.query(Job).filter(Job.kind == "sweep").count() == 10
