"""Batches as the API sees them: create, retrieve, list, cancel.

Creating a batch checks what can be checked at once (the endpoint is one
Hearth serves, the input file is the caller's and meant for batches), then
writes the batch and its validation job in one transaction: the batch exists
exactly when its work is queued. Everything after that happens in the jobs
of ``execution.py``; a cancel only moves the batch to cancelling, which those
jobs see before their next line.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from hearth.batches.endpoints import SERVED
from hearth.batches.execution import ATTEMPTS, VALIDATE
from hearth.batches.protocol import (
    CANCELLING,
    IN_PROGRESS,
    VALIDATING,
    Batch,
    BatchErrors,
    BatchRequestCounts,
    BatchUsage,
    CreateBatchRequest,
)
from hearth.caller import Caller
from hearth.errors import Conflict, InvalidRequest, NotFound
from hearth.jobs import JobQueue
from hearth.settings import Settings
from hearth.store import batches as repo
from hearth.store import files as files_repo
from hearth.store.batches import Tally
from hearth.store.db import Database
from hearth.store.ids import new_id, now
from hearth.store.pagination import PageRequest
from hearth.store.tables import Batch as BatchRow


def batch_object(row: BatchRow, tally: Tally) -> Batch:
    return Batch(
        id=row.id, endpoint=row.endpoint, model=row.model, input_file_id=row.input_file_id,
        completion_window=row.completion_window, status=row.status,  # type: ignore[arg-type]
        errors=BatchErrors.model_validate({"data": row.errors}) if row.errors else None,
        output_file_id=row.output_file_id, error_file_id=row.error_file_id,
        created_at=row.created_at, in_progress_at=row.in_progress_at, expires_at=row.expires_at,
        finalizing_at=row.finalizing_at, completed_at=row.completed_at, failed_at=row.failed_at,
        expired_at=row.expired_at, cancelling_at=row.cancelling_at, cancelled_at=row.cancelled_at,
        request_counts=BatchRequestCounts(total=row.request_total, completed=tally.ok, failed=tally.failed),
        usage=BatchUsage(input_tokens=tally.input_tokens, output_tokens=tally.output_tokens,
                         total_tokens=tally.input_tokens + tally.output_tokens),
        metadata=row.metadata_,
    )


def not_found(batch_id: str) -> NotFound:
    return NotFound(f"No such Batch object: {batch_id}", param="batch_id")


class BatchService:
    def __init__(self, db: Database, jobs: JobQueue, settings: Settings) -> None:
        self.db = db
        self.jobs = jobs
        self.settings = settings

    def create(self, caller: Caller, body: CreateBatchRequest) -> Batch:
        if body.endpoint not in SERVED:
            raise InvalidRequest(f"Batches cannot use the endpoint '{body.endpoint}' on this server; "
                                 f"it runs batches for {', '.join(SERVED)}.", param="endpoint")
        created = now()
        with self.db.session() as session:
            source = files_repo.get_file(session, caller.project_id, body.input_file_id)
            if source is None:
                raise NotFound(f"No such File object: {body.input_file_id}", param="input_file_id")
            if source.purpose != "batch":
                raise InvalidRequest(f"The file {body.input_file_id} has purpose '{source.purpose}'; a batch's "
                                     "input file must be uploaded with purpose 'batch'.", param="input_file_id")
            row = BatchRow(
                id=new_id("batch_"), organization_id=caller.organization_id, project_id=caller.project_id,
                api_key_id=caller.api_key_id, endpoint=body.endpoint, input_file_id=body.input_file_id,
                completion_window=body.completion_window, status=VALIDATING, metadata_=body.metadata,
                output_expires_after=body.output_expires_after.seconds if body.output_expires_after else None,
                request_total=0, chunks=0, created_at=created,
                expires_at=created + self.settings.batch_completion_window_seconds,
            )
            session.add(row)
            self.jobs.enqueue_in(session, VALIDATE, {"batch_id": row.id}, project_id=caller.project_id,
                                 max_attempts=ATTEMPTS)
        return batch_object(row, Tally())

    def retrieve(self, caller: Caller, batch_id: str) -> Batch:
        with self.db.session() as session:
            row = repo.get_batch(session, batch_id, caller.project_id)
            if row is None:
                raise not_found(batch_id)
            return self._objects(session, [row])[0]

    def list_batches(self, caller: Caller, page: PageRequest) -> tuple[list[Batch], bool]:
        with self.db.session() as session:
            rows, has_more = repo.list_batches(session, caller.project_id, page)
            return self._objects(session, rows), has_more

    def cancel(self, caller: Caller, batch_id: str) -> Batch:
        """Ask a validating or running batch to stop; it turns cancelled once its jobs have."""
        with self.db.session() as session:
            row = repo.get_batch(session, batch_id, caller.project_id)
            if row is None:
                raise not_found(batch_id)
            repo.move(session, batch_id, [VALIDATING, IN_PROGRESS], CANCELLING, cancelling_at=now())
            session.refresh(row)
            if row.status != CANCELLING:
                raise Conflict(f"Cannot cancel a batch with status '{row.status}'.")
            return self._objects(session, [row])[0]

    @staticmethod
    def _objects(session: Session, rows: Sequence[BatchRow]) -> list[Batch]:
        tallies = repo.tallies(session, [row.id for row in rows])
        return [batch_object(row, tallies.get(row.id, Tally())) for row in rows]
