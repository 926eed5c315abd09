"""Files, Uploads and their parts in SQL; every lookup is scoped to a project.

Rows that own a blob follow one protocol: insert ``pending`` (never listed),
write the blob, then mark the row ready. A row left pending by a crash names
the blob to delete, so nothing half-written survives a restart.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import CursorResult, Select, delete, func, select, update
from sqlalchemy.orm import Session

from hearth.store.ids import new_id, now
from hearth.store.pagination import PageRequest, keyset_page
from hearth.store.tables import File, Upload, UploadPart

PENDING = "pending"
PROCESSED = "processed"
READY = "ready"
DELETING = "deleting"


# Files


def add_pending_file(session: Session, *, project_id: str, filename: str, writer: str) -> File:
    """A file about to be written; its purpose may only be known once the body is read."""
    file_id = new_id("file-")
    record = File(id=file_id, project_id=project_id, filename=filename, purpose="", bytes=0,
                  status=PENDING, blob_key=f"files/{file_id}", writer=writer, created_at=now())
    session.add(record)
    return record


def mark_file_processed(session: Session, file_id: str, *, size: int, purpose: str,
                        expires_after: int | None) -> File:
    record = session.get_one(File, file_id)
    record.bytes = size
    record.purpose = purpose
    record.status = PROCESSED
    if expires_after is not None:
        record.expires_at = record.created_at + expires_after
    return record


def _visible_files(project_id: str) -> Select:
    current = now()
    return select(File).where(
        File.project_id == project_id,
        File.status == PROCESSED,
        (File.expires_at.is_(None)) | (File.expires_at > current),
    )


def get_file(session: Session, project_id: str, file_id: str) -> File | None:
    return session.scalar(_visible_files(project_id).where(File.id == file_id))


def list_files(session: Session, project_id: str, purpose: str | None,
               page: PageRequest) -> tuple[list[File], bool]:
    stmt = _visible_files(project_id)
    if purpose is not None:
        stmt = stmt.where(File.purpose == purpose)
    return keyset_page(session, stmt, File, page)


def mark_file_deleting(session: Session, record: File) -> None:
    """Hide the file at once; its blob and row go next (or in the sweep, after a crash)."""
    record.status = DELETING


def files_to_purge(session: Session, limit: int = 500) -> list[File]:
    """Files being deleted or past their expiry: their blobs go, then their rows."""
    expired = File.expires_at.is_not(None) & (File.expires_at <= now()) & (File.status == PROCESSED)
    stmt = select(File).where((File.status == DELETING) | expired)
    return list(session.scalars(stmt.limit(limit)))


def forget_file(session: Session, file_id: str) -> None:
    session.execute(delete(File).where(File.id == file_id))


# Uploads


def add_upload(session: Session, *, project_id: str, filename: str, purpose: str, size: int,
               mime_type: str, ttl: int, file_expires_after: int | None) -> Upload:
    created = now()
    record = Upload(
        id=new_id("upload_"), project_id=project_id, filename=filename, purpose=purpose,
        bytes=size, mime_type=mime_type, status=PENDING, created_at=created,
        expires_at=created + ttl, file_expires_after=file_expires_after,
    )
    session.add(record)
    return record


def get_upload(session: Session, project_id: str, upload_id: str) -> Upload | None:
    return session.scalar(
        select(Upload).where(Upload.id == upload_id, Upload.project_id == project_id))


def set_upload_status(session: Session, upload_id: str, status: str,
                      file_id: str | None = None) -> bool:
    """Move a pending upload to ``status``; False if another request moved it first."""
    values: dict = {"status": status}
    if file_id is not None:
        values["file_id"] = file_id
    result = session.execute(
        update(Upload).where(Upload.id == upload_id, Upload.status == PENDING).values(**values))
    return cast(CursorResult, result).rowcount == 1


def overdue_upload_ids(session: Session, limit: int = 500) -> list[str]:
    stmt = select(Upload.id).where(Upload.status == PENDING, Upload.expires_at <= now())
    return list(session.scalars(stmt.limit(limit)))


# Parts


def add_pending_part(session: Session, upload_id: str, writer: str) -> UploadPart:
    part_id = new_id("part_")
    record = UploadPart(id=part_id, upload_id=upload_id, bytes=0, status=PENDING,
                        blob_key=f"uploads/{upload_id}/{part_id}", writer=writer,
                        created_at=now())
    session.add(record)
    return record


def mark_part_ready(session: Session, part_id: str, size: int) -> UploadPart:
    record = session.get_one(UploadPart, part_id)
    record.bytes = size
    record.status = READY
    return record


def ready_parts(session: Session, upload_id: str) -> dict[str, UploadPart]:
    stmt = select(UploadPart).where(UploadPart.upload_id == upload_id,
                                    UploadPart.status == READY)
    return {part.id: part for part in session.scalars(stmt)}


def bytes_received(session: Session, upload_id: str) -> int:
    total = session.scalar(select(func.sum(UploadPart.bytes)).where(
        UploadPart.upload_id == upload_id, UploadPart.status == READY))
    return int(total or 0)


def parts_to_purge(session: Session, upload_id: str | None = None,
                   limit: int = 1000) -> list[UploadPart]:
    """Ready parts of uploads that are no longer pending (completed, cancelled, expired).

    Parts still being written are left to their writer, which discards them
    itself when it finds the upload gone.
    """
    stmt = (select(UploadPart).join(Upload, Upload.id == UploadPart.upload_id)
            .where(UploadPart.status == READY, Upload.status != PENDING))
    if upload_id is not None:
        stmt = stmt.where(UploadPart.upload_id == upload_id)
    return list(session.scalars(stmt.limit(limit)))


def forget_parts(session: Session, part_ids: list[str]) -> None:
    session.execute(delete(UploadPart).where(UploadPart.id.in_(part_ids)))


# Recovery


def take_abandoned_writes(session: Session, writer: str) -> list[str]:
    """Delete the rows ``writer`` left pending when it stopped; return their blob keys."""
    keys: list[str] = []
    for table in (UploadPart, File):
        stmt = select(table.blob_key).where(table.writer == writer, table.status == PENDING)
        keys += session.scalars(stmt)
        session.execute(delete(table).where(table.writer == writer, table.status == PENDING))
    return keys


def discard_pending(session: Session, table: type[File | UploadPart], row_id: str) -> None:
    session.execute(delete(table).where(table.id == row_id, table.status == PENDING))


def upload_status(session: Session, upload_id: str) -> str | None:
    return session.scalar(select(Upload.status).where(Upload.id == upload_id))
