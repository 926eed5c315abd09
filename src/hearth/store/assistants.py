"""Assistants, threads, messages, runs and run steps in SQL.

Every object is scoped to its project: a lookup names the project (or the
thread, which is) and another project's id reads as no object at all. A run's
status changes only by compare-and-set (``move_run``), conditional on the
statuses it leaves and, for a driver, on still being the run's driver.

Message, run and step ids are time-ordered (``ordered_id``), so listing by
(created_at, id) is the order they were made in, even within one second.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Collection
from typing import Any, cast

from sqlalchemy import CursorResult, Select, delete, select, update
from sqlalchemy.orm import Session

from hearth.store.pagination import PageRequest, keyset_page
from hearth.store.tables import (
    AssistantFileRow,
    AssistantRow,
    RunRow,
    RunStepRow,
    ThreadMessageRow,
    ThreadRow,
)

_clock = threading.Lock()
_last_micros = 0


def ordered_id(prefix: str) -> str:
    """A prefix and 24 characters: microseconds since the epoch (14 hex digits, increasing
    within the process), then 10 random hex digits."""
    global _last_micros
    with _clock:
        _last_micros = max(_last_micros + 1, time.time_ns() // 1000)
        micros = _last_micros
    return f"{prefix}{micros:014x}{secrets.token_hex(5)}"


# Assistants


def get_assistant(session: Session, project_id: str, assistant_id: str) -> AssistantRow | None:
    return session.scalar(select(AssistantRow).where(AssistantRow.id == assistant_id,
                                                     AssistantRow.project_id == project_id))


def list_assistants(session: Session, project_id: str, page: PageRequest) -> tuple[list[AssistantRow], bool]:
    stmt: Select = select(AssistantRow).where(AssistantRow.project_id == project_id)
    return keyset_page(session, stmt, AssistantRow, page)


def delete_assistant(session: Session, assistant_id: str) -> None:
    delete_assistant_files(session, assistant_id)
    session.execute(delete(AssistantRow).where(AssistantRow.id == assistant_id))


def attach_file(session: Session, assistant_id: str, file_id: str, created_at: int) -> AssistantFileRow:
    attached = AssistantFileRow(assistant_id=assistant_id, file_id=file_id, created_at=created_at,
                                seq=int(ordered_id("")[:14], 16))
    session.add(attached)
    return attached


def get_assistant_file(session: Session, assistant_id: str, file_id: str) -> AssistantFileRow | None:
    return session.get(AssistantFileRow, (assistant_id, file_id))


def list_assistant_files(session: Session, assistant_id: str, page: PageRequest
                         ) -> tuple[list[AssistantFileRow], bool]:
    stmt: Select = select(AssistantFileRow).where(AssistantFileRow.assistant_id == assistant_id)
    return keyset_page(session, stmt, _AssistantFileKeys, page)


class _AssistantFileKeys:
    """What ``keyset_page`` orders assistant files by: when attached, to the microsecond."""

    created_at = AssistantFileRow.seq
    id = AssistantFileRow.file_id


# Threads


def get_thread(session: Session, project_id: str, thread_id: str) -> ThreadRow | None:
    return session.scalar(select(ThreadRow).where(ThreadRow.id == thread_id, ThreadRow.project_id == project_id))


def delete_thread(session: Session, thread_id: str) -> None:
    """The thread and everything in it."""
    run_ids = select(RunRow.id).where(RunRow.thread_id == thread_id)
    session.execute(delete(RunStepRow).where(RunStepRow.run_id.in_(run_ids)))
    session.execute(delete(RunRow).where(RunRow.thread_id == thread_id))
    session.execute(delete(ThreadMessageRow).where(ThreadMessageRow.thread_id == thread_id))
    session.execute(delete(ThreadRow).where(ThreadRow.id == thread_id))


# Messages


def get_message(session: Session, thread_id: str, message_id: str) -> ThreadMessageRow | None:
    return session.scalar(select(ThreadMessageRow).where(ThreadMessageRow.id == message_id,
                                                         ThreadMessageRow.thread_id == thread_id))


def list_messages(session: Session, thread_id: str, page: PageRequest, run_id: str | None = None
                  ) -> tuple[list[ThreadMessageRow], bool]:
    stmt: Select = select(ThreadMessageRow).where(ThreadMessageRow.thread_id == thread_id)
    if run_id is not None:
        stmt = stmt.where(ThreadMessageRow.run_id == run_id)
    return keyset_page(session, stmt, ThreadMessageRow, page)


def thread_messages(session: Session, thread_id: str) -> list[ThreadMessageRow]:
    """Every message of the thread, oldest first."""
    return list(session.scalars(select(ThreadMessageRow).where(ThreadMessageRow.thread_id == thread_id)
                                .order_by(ThreadMessageRow.created_at, ThreadMessageRow.id)))


# Runs


def get_run(session: Session, thread_id: str, run_id: str) -> RunRow | None:
    return session.scalar(select(RunRow).where(RunRow.id == run_id, RunRow.thread_id == thread_id))


def run_by_id(session: Session, run_id: str) -> RunRow | None:
    return session.get(RunRow, run_id)


def list_runs(session: Session, thread_id: str, page: PageRequest) -> tuple[list[RunRow], bool]:
    stmt: Select = select(RunRow).where(RunRow.thread_id == thread_id)
    return keyset_page(session, stmt, RunRow, page)


def active_run(session: Session, thread_id: str, statuses: Collection[str]) -> RunRow | None:
    return session.scalars(select(RunRow).where(RunRow.thread_id == thread_id, RunRow.status.in_(statuses))
                           .limit(1)).first()


def move_run(session: Session, run_id: str, from_statuses: Collection[str], *, by: str | None = None,
             **values: Any) -> bool:
    """Apply ``values`` if the run is in one of ``from_statuses`` (and, given ``by``, still
    driven by that driver); True if it was."""
    stmt = update(RunRow).where(RunRow.id == run_id, RunRow.status.in_(from_statuses))
    if by is not None:
        stmt = stmt.where(RunRow.driver == by)
    result = session.execute(stmt.values(**values))
    return cast(CursorResult, result).rowcount == 1


def take_over(session: Session, run_id: str, previous: str | None, driver: str | None, at: float) -> bool:
    """Make ``driver`` the run's driver if ``previous`` still is; True if this call did."""
    stmt = update(RunRow).where(RunRow.id == run_id)
    stmt = stmt.where(RunRow.driver.is_(None) if previous is None else RunRow.driver == previous)
    result = session.execute(stmt.values(driver=driver, heartbeat_at=at))
    return cast(CursorResult, result).rowcount == 1


def heartbeat(session: Session, run_id: str, driver: str, at: float) -> bool:
    result = session.execute(update(RunRow).where(RunRow.id == run_id, RunRow.driver == driver)
                             .values(heartbeat_at=at))
    return cast(CursorResult, result).rowcount == 1


# Run steps


def get_step(session: Session, run_id: str, step_id: str) -> RunStepRow | None:
    return session.scalar(select(RunStepRow).where(RunStepRow.id == step_id, RunStepRow.run_id == run_id))


def list_steps(session: Session, run_id: str, page: PageRequest) -> tuple[list[RunStepRow], bool]:
    stmt: Select = select(RunStepRow).where(RunStepRow.run_id == run_id)
    return keyset_page(session, stmt, RunStepRow, page)


def steps_of_run(session: Session, run_id: str, statuses: Collection[str] | None = None) -> list[RunStepRow]:
    stmt = select(RunStepRow).where(RunStepRow.run_id == run_id)
    if statuses is not None:
        stmt = stmt.where(RunStepRow.status.in_(statuses))
    return list(session.scalars(stmt.order_by(RunStepRow.created_at, RunStepRow.id)))


def tool_steps_of_thread(session: Session, thread_id: str) -> list[RunStepRow]:
    """The thread's function-calling steps that have their outputs, oldest first."""
    return list(session.scalars(select(RunStepRow).where(
        RunStepRow.thread_id == thread_id, RunStepRow.type == "tool_calls", RunStepRow.status == "completed",
    ).order_by(RunStepRow.created_at, RunStepRow.id)))


def delete_assistant_files(session: Session, assistant_id: str) -> None:
    session.execute(delete(AssistantFileRow).where(AssistantFileRow.assistant_id == assistant_id))


def run_messages(session: Session, run_id: str, statuses: Collection[str]) -> list[ThreadMessageRow]:
    return list(session.scalars(select(ThreadMessageRow).where(ThreadMessageRow.run_id == run_id,
                                                               ThreadMessageRow.status.in_(statuses))))
