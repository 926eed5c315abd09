"""A durable job queue kept in the database, for work that outlives a request.

Jobs are rows (``store.tables.Job``). A worker *claims* a due job for a
lease; while it runs it renews the lease with heartbeats and may save
progress. If the worker dies, its lease expires and the next claim takes the
job over, with the saved progress, so a handler resumes instead of starting
again. Every transition a worker makes is an UPDATE conditional on it still
holding the lease, so a worker that lost its lease (paused, partitioned)
cannot overwrite what the new owner does.

Claiming is safe between threads, processes and machines: on PostgreSQL the
candidate row is selected ``FOR UPDATE SKIP LOCKED``, so concurrent claimers
pass over each other's rows; SQLite has no row locks (the clause compiles to
nothing there), so the claim itself is a compare-and-set UPDATE that repeats
the due condition and counts the rows it changed.

Periodic work is a ``JobSchedule`` row; whoever advances its ``next_run_at``
(again a compare-and-set) enqueues that tick's job, in the same transaction.

All times are float Unix seconds, read from an injectable clock so tests
move time instead of sleeping.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, case, event, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hearth.store.db import Database
from hearth.store.ids import new_id
from hearth.store.tables import Job, JobSchedule

# A claim that loses its candidate to another claimer looks again, this many times in all.
_CLAIM_TRIES = 5
# What every final transition (and a release) writes: the job no longer has an owner.
_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Lease(enum.Enum):
    """What a heartbeat found: the lease renewed, renewed but cancel requested, or gone."""

    HELD = "held"
    CANCEL_REQUESTED = "cancel_requested"
    LOST = "lost"


@dataclass(frozen=True)
class ClaimedJob:
    """A job as its new owner received it; ``attempt`` counts this run (1 for the first)."""

    id: str
    kind: str
    project_id: str | None
    payload: dict[str, Any]
    progress: dict[str, Any]
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class JobSnapshot:
    """A job's row as it stood when read, detached from any session."""

    id: str
    kind: str
    project_id: str | None
    payload: dict[str, Any]
    progress: dict[str, Any] | None
    result: dict[str, Any] | None
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    last_error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


class JobQueue:
    """Enqueue, claim and settle jobs; synchronous, so call it from threads in async code."""

    def __init__(self, db: Database, *, now: Callable[[], float] = time.time) -> None:
        self._db = db
        self._now = now
        # Called once a transaction that enqueued a job commits: this process's workers claim it
        # at once instead of at their next poll (workers elsewhere still find it by polling).
        self._on_enqueued: list[Callable[[], None]] = []

    def on_enqueued(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from whichever thread committed) after each commit that enqueued a
        job; returns the function that stops it."""
        self._on_enqueued.append(callback)
        return lambda: self._on_enqueued.remove(callback)

    def _announce(self, _: Session) -> None:
        for callback in list(self._on_enqueued):
            callback()

    # -- producers --------------------------------------------------------------------------

    def enqueue(self, kind: str, payload: dict[str, Any], *, project_id: str | None = None,
                run_at: float | None = None, max_attempts: int = 3) -> str:
        """Add a job in its own transaction; returns its id."""
        with self._db.session() as session:
            return self.enqueue_in(session, kind, payload, project_id=project_id, run_at=run_at,
                                   max_attempts=max_attempts)

    def enqueue_in(self, session: Session, kind: str, payload: dict[str, Any], *,
                   project_id: str | None = None, run_at: float | None = None, max_attempts: int = 3) -> str:
        """Add a job inside the caller's transaction, so it exists exactly when the caller's rows do."""
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        now = self._now()
        job = Job(id=new_id("job_"), kind=kind, project_id=project_id, payload=payload,
                  status=JobStatus.QUEUED, attempts=0, max_attempts=max_attempts,
                  run_at=now if run_at is None else run_at, cancel_requested=False, created_at=now)
        session.add(job)
        if self._on_enqueued and not event.contains(session, "after_commit", self._announce):
            event.listen(session, "after_commit", self._announce)
        return job.id

    def cancel(self, job_id: str) -> JobStatus | None:
        """Cancel a job: at once if queued; if running, flag it for its worker to stop.

        Returns the status the job is left in (``running`` while its worker has
        yet to stop it), or None if there is no such job.
        """
        now = self._now()
        with self._db.session() as session:
            if _changed(session, update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
                        .values(status=JobStatus.CANCELLED, finished_at=now)):
                return JobStatus.CANCELLED
            if _changed(session, update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
                        .values(cancel_requested=True)):
                return JobStatus.RUNNING
            status = session.scalar(select(Job.status).where(Job.id == job_id))
            return None if status is None else JobStatus(status)

    def get(self, job_id: str) -> JobSnapshot | None:
        with self._db.session() as session:
            job = session.get(Job, job_id)
            return None if job is None else _snapshot(job)

    # -- workers ----------------------------------------------------------------------------

    def claim(self, kinds: Collection[str], worker_id: str, lease_seconds: float) -> ClaimedJob | None:
        """Take the oldest due job of these kinds for ``lease_seconds``, or None if there is none.

        Due means queued with ``run_at`` passed, or running with its lease
        expired (its worker died). An expired job that was asked to cancel, or
        has used all its attempts, is settled on the way instead of re-run.
        """
        for _ in range(_CLAIM_TRIES):
            now = self._now()
            with self._db.session() as session:
                job = session.scalars(
                    select(Job).where(Job.kind.in_(kinds), _due(now))
                    .order_by(Job.run_at, Job.created_at).limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if job is None:
                    return None
                if job.cancel_requested or job.attempts >= job.max_attempts:
                    _settle_abandoned(session, job, now)
                    continue
                taken = _changed(session, update(Job).where(Job.id == job.id, _due(now)).values(
                    status=JobStatus.RUNNING, lease_owner=worker_id, lease_expires_at=now + lease_seconds,
                    attempts=Job.attempts + 1, started_at=now))
                if taken:
                    session.refresh(job)
                    return ClaimedJob(id=job.id, kind=job.kind, project_id=job.project_id, payload=job.payload,
                                      progress=dict(job.progress or {}), attempt=job.attempts,
                                      max_attempts=job.max_attempts)
        return None

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float) -> Lease:
        """Renew the lease; says whether it is still held and whether cancel was requested."""
        with self._db.session() as session:
            renewed = _changed(session, update(Job).where(_owned(job_id, worker_id))
                               .values(lease_expires_at=self._now() + lease_seconds))
            if not renewed:
                return Lease.LOST
            cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
            return Lease.CANCEL_REQUESTED if cancel else Lease.HELD

    def save_progress(self, job_id: str, worker_id: str, progress: dict[str, Any]) -> bool:
        """Record how far the handler got; False (nothing saved) if the lease was lost."""
        return self._update_owned(job_id, worker_id, progress=progress)

    def succeed(self, job_id: str, worker_id: str, result: dict[str, Any] | None = None) -> bool:
        return self._update_owned(job_id, worker_id, status=JobStatus.SUCCEEDED, result=result,
                            finished_at=self._now(), **_NO_LEASE)

    def fail(self, job_id: str, worker_id: str, error: str, *, retry_in: float | None = None) -> bool:
        """End this attempt with an error.

        With ``retry_in`` the job is queued again that many seconds from now if
        it has attempts left; without it, or with none left, it fails for good.
        """
        now = self._now()
        if retry_in is None:
            return self._update_owned(job_id, worker_id, status=JobStatus.FAILED, last_error=error, finished_at=now,
                                **_NO_LEASE)
        retry = Job.attempts < Job.max_attempts
        return self._update_owned(job_id, worker_id, status=case((retry, JobStatus.QUEUED), else_=JobStatus.FAILED),
                            last_error=error, run_at=case((retry, now + retry_in), else_=Job.run_at),
                            finished_at=case((retry, None), else_=now), **_NO_LEASE)

    def mark_cancelled(self, job_id: str, worker_id: str) -> bool:
        """The owner stopped the job because cancel was requested."""
        return self._update_owned(job_id, worker_id, status=JobStatus.CANCELLED, finished_at=self._now(), **_NO_LEASE)

    def release(self, job_id: str, worker_id: str) -> bool:
        """Hand a job back unfinished (the worker is shutting down) for another worker to run at once.

        The attempt is not counted against the job; a job asked to cancel is
        cancelled instead.
        """
        now = self._now()
        cancel = Job.cancel_requested == true()
        return self._update_owned(job_id, worker_id, status=case((cancel, JobStatus.CANCELLED), else_=JobStatus.QUEUED),
                            attempts=case((cancel, Job.attempts), else_=Job.attempts - 1),
                            run_at=now, finished_at=case((cancel, now), else_=None), **_NO_LEASE)

    def _update_owned(self, job_id: str, worker_id: str, **values: Any) -> bool:
        """Apply ``values`` only if ``worker_id`` still holds the job's lease."""
        with self._db.session() as session:
            return _changed(session, update(Job).where(_owned(job_id, worker_id)).values(**values))

    # -- periodic work ----------------------------------------------------------------------

    def ensure_schedule(self, name: str, kind: str, interval_seconds: float,
                        payload: dict[str, Any] | None = None) -> None:
        """Create or update a schedule; a new one is due at once, a shortened interval applies now."""
        now = self._now()
        values = {"kind": kind, "payload": payload or {}, "interval_seconds": interval_seconds}
        soonest = now + interval_seconds
        with self._db.session() as session:
            if _changed(session, update(JobSchedule).where(JobSchedule.name == name).values(
                    next_run_at=case((JobSchedule.next_run_at > soonest, soonest), else_=JobSchedule.next_run_at),
                    **values)):
                return
        try:
            with self._db.session() as session:
                session.add(JobSchedule(name=name, next_run_at=now, **values))
        except IntegrityError:
            pass  # another process created it at the same moment, from the same definition

    def enqueue_due_schedules(self, kinds: Collection[str] | None = None) -> list[str]:
        """Enqueue one job per due schedule (of these kinds, if given); returns the new job ids.

        Ticks missed while no worker ran are not made up: the schedule's next
        run moves to one interval from now.
        """
        now = self._now()
        query = select(JobSchedule).where(JobSchedule.next_run_at <= now)
        if kinds is not None:
            query = query.where(JobSchedule.kind.in_(kinds))
        with self._db.session() as session:
            due = session.scalars(query).all()
        enqueued = []
        for schedule in due:
            following = schedule.next_run_at + schedule.interval_seconds
            with self._db.session() as session:
                advanced = _changed(session, update(JobSchedule).where(
                    JobSchedule.name == schedule.name, JobSchedule.next_run_at == schedule.next_run_at,
                ).values(next_run_at=following if following > now else now + schedule.interval_seconds))
                if advanced:
                    enqueued.append(self.enqueue_in(session, schedule.kind, schedule.payload))
        return enqueued


    # -- observing ----------------------------------------------------------------------------

    def depth(self) -> list[tuple[str, str, int]]:
        """Unfinished jobs as (kind, state, count): ``queued`` (due now), ``scheduled`` (due
        later: retries, timers) and ``running``, over every process sharing the database."""
        now = self._now()
        state = case((Job.status == JobStatus.RUNNING, "running"), (Job.run_at <= now, "queued"),
                     else_="scheduled")
        query = (select(Job.kind, state, func.count())
                 .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                 .group_by(Job.kind, state))
        with self._db.session() as session:
            return [(kind, name, count) for kind, name, count in session.execute(query).all()]


def _due(now: float) -> ColumnElement[bool]:
    return or_(
        and_(Job.status == JobStatus.QUEUED, Job.run_at <= now),
        and_(Job.status == JobStatus.RUNNING, Job.lease_expires_at <= now),
    )


def _owned(job_id: str, worker_id: str) -> ColumnElement[bool]:
    return and_(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.lease_owner == worker_id)


def _changed(session: Session, statement: Update) -> bool:
    """Run a conditional UPDATE; True if it matched a row (the compare-and-set won)."""
    return session.connection().execute(statement).rowcount > 0


def _settle_abandoned(session: Session, job: Job, now: float) -> None:
    """End a job whose worker died when it was not to run again: cancelled, or out of attempts."""
    if job.cancel_requested:
        values: dict[str, Any] = {"status": JobStatus.CANCELLED}
    else:
        values = {"status": JobStatus.FAILED,
                  "last_error": job.last_error or f"worker lost on attempt {job.attempts} of {job.max_attempts}"}
    _changed(session, update(Job).where(Job.id == job.id, _due(now))
             .values(finished_at=now, **_NO_LEASE, **values))


def _snapshot(job: Job) -> JobSnapshot:
    return JobSnapshot(
        id=job.id, kind=job.kind, project_id=job.project_id, payload=job.payload, progress=job.progress,
        result=job.result, status=JobStatus(job.status), attempts=job.attempts, max_attempts=job.max_attempts,
        run_at=job.run_at, lease_owner=job.lease_owner, lease_expires_at=job.lease_expires_at,
        cancel_requested=job.cancel_requested, last_error=job.last_error, created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at,
    )
