"""Fine-tuning jobs, their events and checkpoints in SQL.

A job's status moves validating_files -> queued -> running -> succeeded |
failed | cancelled, each move a compare-and-set (``move``) naming the
statuses it leaves, so a cancel and the runner finishing at the same moment
agree on one outcome. Events and checkpoints have time-ordered ids, so
listing by (created_at, id) is the order they happened in.

The fine-tuned model (and each checkpoint's model) is looked up by its
``ft:...`` name, always within the owning project.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CursorResult,
    ForeignKey,
    Integer,
    Select,
    String,
    Text,
    false,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.store.assistants import ordered_id
from hearth.store.pagination import PageRequest, keyset_page
from hearth.store.tables import Base

VALIDATING = "validating_files"
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
# Stopped by its owner with its checkpoints kept; resumed, it is queued again (OpenAI's word for it,
# though the spec's enum of statuses predates pausing).
PAUSED = "paused"
ACTIVE = (VALIDATING, QUEUED, RUNNING)


class FineTuningJobRow(Base):
    __tablename__ = "fine_tuning_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # The name the client asked for, and the catalog model it means.
    model: Mapped[str] = mapped_column(String(128))
    base_model: Mapped[str] = mapped_column(String(128))
    training_file: Mapped[str] = mapped_column(String(64))
    validation_file: Mapped[str | None] = mapped_column(String(64), nullable=True)
    suffix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    # {"type": ..., type: {"hyperparameters": {...}}}, the hyperparameters resolved once known.
    method: Mapped[dict[str, Any]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    # The durable queue's job that carries this one (its attempts, its lease).
    queue_job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(256), nullable=True)
    model_deleted: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    adapter_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    result_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    finished_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class FineTuningEventRow(Base):
    __tablename__ = "fine_tuning_events"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class FineTuningCheckpointRow(Base):
    __tablename__ = "fine_tuning_checkpoints"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(256))
    adapter_path: Mapped[str] = mapped_column(Text)


# Jobs


def get_job(session: Session, job_id: str, project_id: str | None = None) -> FineTuningJobRow | None:
    """The job, or None; scoped to ``project_id`` when one is given (API callers)."""
    stmt = select(FineTuningJobRow).where(FineTuningJobRow.id == job_id)
    if project_id is not None:
        stmt = stmt.where(FineTuningJobRow.project_id == project_id)
    return session.scalar(stmt)


def list_jobs(session: Session, project_id: str, page: PageRequest,
              metadata: dict[str, str] | None = None) -> tuple[list[FineTuningJobRow], bool]:
    stmt: Select = select(FineTuningJobRow).where(FineTuningJobRow.project_id == project_id)
    if not metadata:
        return keyset_page(session, stmt, FineTuningJobRow, page)
    # Few jobs per project: the metadata filter is applied to the rows, a page at a time.
    rows = [row for row in session.scalars(stmt.order_by(FineTuningJobRow.created_at.desc(),
                                                         FineTuningJobRow.id.desc()))
            if all((row.metadata_ or {}).get(key) == value for key, value in metadata.items())]
    if page.after is not None:
        ids = [row.id for row in rows]
        rows = rows[ids.index(page.after) + 1:] if page.after in ids else []
    return rows[: page.limit], len(rows) > page.limit


def move(session: Session, job_id: str, from_statuses: Collection[str], status: str,
         **values: Any) -> bool:
    """Set ``status`` (and ``values``) if the job is in one of ``from_statuses``; True if it was."""
    result = session.execute(update(FineTuningJobRow)
                             .where(FineTuningJobRow.id == job_id,
                                    FineTuningJobRow.status.in_(from_statuses))
                             .values(status=status, **values))
    return cast(CursorResult, result).rowcount == 1


def set_values(session: Session, job_id: str, **values: Any) -> None:
    session.execute(update(FineTuningJobRow).where(FineTuningJobRow.id == job_id).values(**values))


def model_job(session: Session, name: str, project_id: str | None = None) -> FineTuningJobRow | None:
    """The succeeded job whose fine-tuned model is ``name`` (and not deleted)."""
    stmt = select(FineTuningJobRow).where(FineTuningJobRow.fine_tuned_model == name,
                                          FineTuningJobRow.model_deleted.is_(False))
    if project_id is not None:
        stmt = stmt.where(FineTuningJobRow.project_id == project_id)
    return session.scalar(stmt)


def project_models(session: Session, project_id: str) -> list[FineTuningJobRow]:
    return list(session.scalars(select(FineTuningJobRow).where(
        FineTuningJobRow.project_id == project_id, FineTuningJobRow.status == SUCCEEDED,
        FineTuningJobRow.fine_tuned_model.is_not(None), FineTuningJobRow.model_deleted.is_(False))
        .order_by(FineTuningJobRow.created_at)))


# Events


def add_event(session: Session, job_id: str, created_at: int, message: str, *, level: str = "info",
              type: str = "message", data: dict[str, Any] | None = None) -> None:
    session.add(FineTuningEventRow(id=ordered_id("ftevent-"), job_id=job_id, created_at=created_at,
                                   level=level, message=message, type=type, data=data or {}))


def list_events(session: Session, job_id: str, page: PageRequest) -> tuple[list[FineTuningEventRow], bool]:
    stmt: Select = select(FineTuningEventRow).where(FineTuningEventRow.job_id == job_id)
    return keyset_page(session, stmt, FineTuningEventRow, page)


def metric_events(session: Session, job_id: str) -> list[FineTuningEventRow]:
    return list(session.scalars(select(FineTuningEventRow).where(
        FineTuningEventRow.job_id == job_id, FineTuningEventRow.type == "metrics")
        .order_by(FineTuningEventRow.created_at, FineTuningEventRow.id)))


def last_step(session: Session, job_id: str) -> int:
    """The highest step a metrics event was recorded for (0 if none)."""
    steps = [int((event.data or {}).get("step", 0)) for event in metric_events(session, job_id)]
    return max(steps, default=0)


# Checkpoints


def add_checkpoint(session: Session, job_id: str, created_at: int, step: int, metrics: dict[str, Any],
                   model: str, adapter_path: str) -> bool:
    """Record a checkpoint once per step; False if that step already has one."""
    exists = session.scalar(select(FineTuningCheckpointRow.id).where(
        FineTuningCheckpointRow.job_id == job_id, FineTuningCheckpointRow.step_number == step))
    if exists is not None:
        return False
    session.add(FineTuningCheckpointRow(id=ordered_id("ftckpt_"), job_id=job_id, created_at=created_at,
                                        step_number=step, metrics=metrics,
                                        fine_tuned_model_checkpoint=model, adapter_path=adapter_path))
    return True


def list_checkpoints(session: Session, job_id: str,
                     page: PageRequest) -> tuple[list[FineTuningCheckpointRow], bool]:
    stmt: Select = select(FineTuningCheckpointRow).where(FineTuningCheckpointRow.job_id == job_id)
    return keyset_page(session, stmt, FineTuningCheckpointRow, page)


def checkpoint_model(session: Session, name: str,
                     project_id: str) -> tuple[FineTuningCheckpointRow, FineTuningJobRow] | None:
    """The checkpoint named ``name`` in the project, with its job (whose model is not deleted)."""
    found = session.execute(
        select(FineTuningCheckpointRow, FineTuningJobRow)
        .join(FineTuningJobRow, FineTuningJobRow.id == FineTuningCheckpointRow.job_id)
        .where(FineTuningCheckpointRow.fine_tuned_model_checkpoint == name,
               FineTuningJobRow.project_id == project_id, FineTuningJobRow.model_deleted.is_(False))
    ).first()
    return None if found is None else (found[0], found[1])


def model_owner(session: Session, name: str) -> str | None:
    """The project owning a fine-tuned or checkpoint model named ``name``, if any."""
    owner = session.scalar(select(FineTuningJobRow.project_id).where(
        FineTuningJobRow.fine_tuned_model == name, FineTuningJobRow.model_deleted.is_(False)))
    if owner is not None:
        return owner
    return session.scalar(
        select(FineTuningJobRow.project_id)
        .join(FineTuningCheckpointRow, FineTuningJobRow.id == FineTuningCheckpointRow.job_id)
        .where(FineTuningCheckpointRow.fine_tuned_model_checkpoint == name,
               FineTuningJobRow.model_deleted.is_(False)))


def checkpoint_paths(session: Session, job_id: str) -> list[str]:
    return list(session.scalars(select(FineTuningCheckpointRow.adapter_path).where(
        FineTuningCheckpointRow.job_id == job_id)))

