"""Batches, their chunks and their line results in SQL.

Every change of a batch's status is a compare-and-set (``move``): it names
the statuses it moves from, and the caller learns whether it won. A line's
result is inserted once and a second insert of the same line is ignored, so
two workers that both ran a line (one of them after losing its lease) leave
one answer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Select, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hearth.store.pagination import PageRequest, keyset_page
from hearth.store.tables import Batch, BatchChunk, BatchResult


@dataclass(frozen=True)
class Tally:
    """What a batch's recorded results add up to."""

    ok: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def recorded(self) -> int:
        return self.ok + self.failed


@dataclass(frozen=True)
class LineResult:
    """One line's answer, ready to record: the output line, and what it counts towards."""

    line: int
    custom_id: str
    ok: bool
    output: str
    input_tokens: int = 0
    output_tokens: int = 0


# Batches


def get_batch(session: Session, batch_id: str, project_id: str | None = None) -> Batch | None:
    """The batch, or None; scoped to ``project_id`` when one is given (API callers)."""
    stmt = select(Batch).where(Batch.id == batch_id)
    if project_id is not None:
        stmt = stmt.where(Batch.project_id == project_id)
    return session.scalar(stmt)


def lock_batch(session: Session, batch_id: str) -> Batch | None:
    """The batch, its row locked until the transaction ends (PostgreSQL; SQLite locks on write)."""
    return session.scalar(select(Batch).where(Batch.id == batch_id).with_for_update())


def list_batches(session: Session, project_id: str, page: PageRequest) -> tuple[list[Batch], bool]:
    stmt: Select = select(Batch).where(Batch.project_id == project_id)
    return keyset_page(session, stmt, Batch, page)


def move(session: Session, batch_id: str, from_statuses: Collection[str], status: str,
         **values: Any) -> bool:
    """Set ``status`` (and ``values``) if the batch is in one of ``from_statuses``; True if it was."""
    result = session.execute(update(Batch).where(Batch.id == batch_id, Batch.status.in_(from_statuses))
                             .values(status=status, **values))
    return cast(CursorResult, result).rowcount == 1


def set_file(session: Session, batch_id: str, column: str, file_id: str) -> bool:
    """Name the batch's output or error file, unless one is named already; True if this did."""
    target = getattr(Batch, column)
    result = session.execute(update(Batch).where(Batch.id == batch_id, target.is_(None))
                             .values({column: file_id}))
    return cast(CursorResult, result).rowcount == 1


def tallies(session: Session, batch_ids: Collection[str]) -> dict[str, Tally]:
    """Each batch's results summed: answered well, failed, tokens in and out."""
    ok = func.sum(case((BatchResult.ok, 1), else_=0))
    rows = session.execute(
        select(BatchResult.batch_id, ok, func.count(), func.sum(BatchResult.input_tokens),
               func.sum(BatchResult.output_tokens))
        .where(BatchResult.batch_id.in_(batch_ids)).group_by(BatchResult.batch_id))
    return {batch_id: Tally(int(good), int(total) - int(good), int(tokens_in), int(tokens_out))
            for batch_id, good, total, tokens_in, tokens_out in rows}


# Chunks


def add_chunks(session: Session, batch_id: str, spans: Iterable[tuple[int, int]], *, done: bool) -> None:
    session.add_all(BatchChunk(batch_id=batch_id, index=index, first_line=first, end_line=end, done=done)
                    for index, (first, end) in enumerate(spans))


def get_chunk(session: Session, batch_id: str, index: int) -> BatchChunk | None:
    return session.get(BatchChunk, (batch_id, index))


def chunks_of(session: Session, batch_id: str) -> list[BatchChunk]:
    return list(session.scalars(select(BatchChunk).where(BatchChunk.batch_id == batch_id)
                                .order_by(BatchChunk.index)))


def finish_chunk(session: Session, batch_id: str, index: int) -> bool:
    """Mark the chunk done; True if that left no chunk of the batch undone.

    The chunk's row is written first and the batch's row locked next, so of
    two chunks finishing together the second to commit counts the first as
    done: exactly one of them sees none left.
    """
    session.execute(update(BatchChunk).where(BatchChunk.batch_id == batch_id, BatchChunk.index == index,
                                             BatchChunk.done.is_(False)).values(done=True))
    lock_batch(session, batch_id)
    undone = session.scalar(select(func.count()).where(BatchChunk.batch_id == batch_id,
                                                       BatchChunk.done.is_(False)))
    return undone == 0


# Results


def recorded_lines(session: Session, batch_id: str, first: int, end: int) -> set[int]:
    return set(session.scalars(select(BatchResult.line).where(
        BatchResult.batch_id == batch_id, BatchResult.line >= first, BatchResult.line < end)))


def record_result(session: Session, batch_id: str, result: LineResult) -> None:
    """Insert the line's result; if the line already has one, keep that and drop this."""
    values = {"batch_id": batch_id, "line": result.line, "custom_id": result.custom_id, "ok": result.ok,
              "output": result.output, "input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
    # INSERT ... ON CONFLICT DO NOTHING, in the dialect of each database Hearth runs on.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(postgresql.insert(BatchResult).values(values).on_conflict_do_nothing())
    else:
        session.execute(sqlite.insert(BatchResult).values(values).on_conflict_do_nothing())


def results_between(session: Session, batch_id: str, first: int, end: int) -> list[BatchResult]:
    """The results of lines ``first`` to before ``end``, in line order."""
    return list(session.scalars(select(BatchResult).where(
        BatchResult.batch_id == batch_id, BatchResult.line >= first, BatchResult.line < end,
    ).order_by(BatchResult.line)))


def forget_outputs(session: Session, batch_id: str) -> None:
    """Drop the output lines once the files hold them; flags and token counts stay."""
    session.execute(update(BatchResult).where(BatchResult.batch_id == batch_id,
                                              BatchResult.output.is_not(None)).values(output=None))
