"""Vector stores, their files and file batches in SQL; every lookup is scoped to a project.

The chunks and their vectors are not here: they live in the vector index
(``hearth.vector_stores.index``). These rows say which files a store holds and
how far each got (``in_progress`` -> ``completed`` / ``failed`` / ``cancelled``);
a search only reads chunks of files whose row says ``completed`` and whose File
still exists, so the index may lag a deletion but a search never does.
A file's status changes by compare-and-set, so a job that lost its file (removed,
cancelled) finds out when it tries to finish it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, CursorResult, ForeignKey, Index, Select, String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from hearth.store.files import PROCESSED
from hearth.store.pagination import PageRequest, keyset_page
from hearth.store.tables import Base, File

FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")


class VectorStoreRow(Base):
    __tablename__ = "vector_stores"
    __table_args__ = (Index("ix_vector_stores_project_created", "project_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    api_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(512), nullable=True)
    # The embedding model every chunk of the store was (and every query is) embedded with.
    embedding_model: Mapped[str] = mapped_column(String(128))
    expires_after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_active_at: Mapped[int] = mapped_column(BigInteger)
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)


class VectorStoreFileRow(Base):
    """A File in a vector store; ``id`` is the file's id (a file is in a store at most once)."""

    __tablename__ = "vector_store_files"
    __table_args__ = (Index("ix_vector_store_files_store_created", "vector_store_id", "created_at", "id"),
                      Index("ix_vector_store_files_file", "id"),
                      Index("ix_vector_store_files_batch", "batch_id"))

    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"),
                                                 primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    chunking_strategy: Mapped[dict[str, Any]] = mapped_column(JSON)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Bumped each time the file is (re)attached: a job carries it, so a stale job finishes nothing.
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks: Mapped[int] = mapped_column(BigInteger, default=0)
    pages: Mapped[int] = mapped_column(BigInteger, default=0)


class VectorStoreFileBatchRow(Base):
    __tablename__ = "vector_store_file_batches"
    __table_args__ = (Index("ix_vector_store_file_batches_store", "vector_store_id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    vector_store_id: Mapped[str] = mapped_column(ForeignKey("vector_stores.id", ondelete="CASCADE"))
    project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    # in_progress until its files are done; cancelled is stored when asked, the rest is read off its files.
    status: Mapped[str] = mapped_column(String(16))


@dataclass
class Counts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.in_progress + self.completed + self.failed + self.cancelled

    def as_dict(self) -> dict[str, int]:
        return {"in_progress": self.in_progress, "completed": self.completed, "failed": self.failed,
                "cancelled": self.cancelled, "total": self.total}


# Stores


def get_store(session: Session, project_id: str, store_id: str) -> VectorStoreRow | None:
    return session.scalar(select(VectorStoreRow).where(VectorStoreRow.id == store_id,
                                                       VectorStoreRow.project_id == project_id))


def store_by_id(session: Session, store_id: str) -> VectorStoreRow | None:
    return session.get(VectorStoreRow, store_id)


def list_stores(session: Session, project_id: str, page: PageRequest) -> tuple[list[VectorStoreRow], bool]:
    stmt: Select = select(VectorStoreRow).where(VectorStoreRow.project_id == project_id)
    return keyset_page(session, stmt, VectorStoreRow, page)


def delete_store(session: Session, store_id: str) -> None:
    session.execute(delete(VectorStoreFileRow).where(VectorStoreFileRow.vector_store_id == store_id))
    session.execute(delete(VectorStoreFileBatchRow).where(VectorStoreFileBatchRow.vector_store_id == store_id))
    session.execute(delete(VectorStoreRow).where(VectorStoreRow.id == store_id))


def counts_by_store(session: Session, store_ids: Sequence[str]) -> dict[str, Counts]:
    out = {store_id: Counts() for store_id in store_ids}
    if not store_ids:
        return out
    rows = session.execute(select(VectorStoreFileRow.vector_store_id, VectorStoreFileRow.status, func.count())
                           .where(VectorStoreFileRow.vector_store_id.in_(store_ids))
                           .group_by(VectorStoreFileRow.vector_store_id, VectorStoreFileRow.status))
    for store_id, status, count in rows:
        setattr(out[store_id], status, count)
    return out


def usage_by_store(session: Session, store_ids: Sequence[str]) -> dict[str, int]:
    if not store_ids:
        return {}
    rows = session.execute(select(VectorStoreFileRow.vector_store_id, func.sum(VectorStoreFileRow.usage_bytes))
                           .where(VectorStoreFileRow.vector_store_id.in_(store_ids))
                           .group_by(VectorStoreFileRow.vector_store_id))
    return {store_id: int(total or 0) for store_id, total in rows}


def expired_store_ids(session: Session, at: int, limit: int = 500) -> list[str]:
    stmt = select(VectorStoreRow.id).where(VectorStoreRow.expires_at.is_not(None), VectorStoreRow.expires_at <= at)
    return list(session.scalars(stmt.limit(limit)))


# Files


def get_store_file(session: Session, store_id: str, file_id: str) -> VectorStoreFileRow | None:
    return session.get(VectorStoreFileRow, (store_id, file_id))


def list_store_files(session: Session, store_id: str, page: PageRequest, status: str | None = None,
                     batch_id: str | None = None) -> tuple[list[VectorStoreFileRow], bool]:
    stmt: Select = select(VectorStoreFileRow).where(VectorStoreFileRow.vector_store_id == store_id)
    if status is not None:
        stmt = stmt.where(VectorStoreFileRow.status == status)
    if batch_id is not None:
        stmt = stmt.where(VectorStoreFileRow.batch_id == batch_id)
    return keyset_page(session, stmt, VectorStoreFileRow, page)


def finish_file(session: Session, store_id: str, file_id: str, generation: int, **values: Any) -> bool:
    """Move a file out of in_progress, if it is still the attachment the job was made for."""
    result = session.execute(update(VectorStoreFileRow).where(
        VectorStoreFileRow.vector_store_id == store_id, VectorStoreFileRow.id == file_id,
        VectorStoreFileRow.generation == generation, VectorStoreFileRow.status == "in_progress").values(**values))
    return cast(CursorResult[Any], result).rowcount == 1


def cancel_batch_files(session: Session, batch_id: str) -> list[tuple[str, str]]:
    """Cancel a batch's files still in progress; the (store, file) pairs cancelled."""
    pairs = [(store_id, file_id) for store_id, file_id in session.execute(
        select(VectorStoreFileRow.vector_store_id, VectorStoreFileRow.id).where(
            VectorStoreFileRow.batch_id == batch_id, VectorStoreFileRow.status == "in_progress"))]
    session.execute(update(VectorStoreFileRow).where(
        VectorStoreFileRow.batch_id == batch_id, VectorStoreFileRow.status == "in_progress"
    ).values(status="cancelled"))
    return pairs


def counts_by_batch(session: Session, batch_ids: Sequence[str]) -> dict[str, Counts]:
    out = {batch_id: Counts() for batch_id in batch_ids}
    if not batch_ids:
        return out
    rows = session.execute(select(VectorStoreFileRow.batch_id, VectorStoreFileRow.status, func.count())
                           .where(VectorStoreFileRow.batch_id.in_(batch_ids))
                           .group_by(VectorStoreFileRow.batch_id, VectorStoreFileRow.status))
    for batch_id, status, count in rows:
        if batch_id is not None:
            setattr(out[batch_id], status, count)
    return out


def get_batch(session: Session, store_id: str, batch_id: str) -> VectorStoreFileBatchRow | None:
    return session.scalar(select(VectorStoreFileBatchRow).where(
        VectorStoreFileBatchRow.id == batch_id, VectorStoreFileBatchRow.vector_store_id == store_id))


def searchable_files(session: Session, store_ids: Collection[str]) -> dict[str, tuple[VectorStoreFileRow, File]]:
    """The completed files of these stores whose File still exists, by file id (with the File)."""
    rows = session.execute(select(VectorStoreFileRow, File).join(File, File.id == VectorStoreFileRow.id).where(
        VectorStoreFileRow.vector_store_id.in_(list(store_ids)), VectorStoreFileRow.status == "completed",
        File.status == PROCESSED))
    return {row.id: (row, file) for row, file in rows}


def orphaned_files(session: Session, limit: int = 500) -> list[tuple[str, str]]:
    """(store, file) pairs whose File is gone: deleted through the Files API."""
    stmt = (select(VectorStoreFileRow.vector_store_id, VectorStoreFileRow.id)
            .outerjoin(File, (File.id == VectorStoreFileRow.id) & (File.status == PROCESSED))
            .where(File.id.is_(None)).limit(limit))
    return [(store_id, file_id) for store_id, file_id in session.execute(stmt)]


def forget_files(session: Session, pairs: Sequence[tuple[str, str]]) -> None:
    for store_id, file_id in pairs:
        session.execute(delete(VectorStoreFileRow).where(VectorStoreFileRow.vector_store_id == store_id,
                                                         VectorStoreFileRow.id == file_id))
