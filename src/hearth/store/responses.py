"""Stored responses, their input items, and conversations with their items, in SQL.

A response's status moves by compare-and-set (``move``), so a background job
finishing and a client cancelling agree on one outcome. Items are kept in
the order they were given (``position``) and listed by that order; a cursor
(``after``/``before``) names an item by its id within its response or
conversation.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session

from hearth.store.pagination import PageRequest, UnknownCursor
from hearth.store.tables import Conversation, ConversationItem, StoredResponse, StoredResponseItem

# How many turns back a previous_response_id chain is followed: far beyond any context window.
MAX_CHAIN = 1000


# Responses


def get_response(session: Session, response_id: str, project_id: str | None = None) -> StoredResponse | None:
    """The response, or None; scoped to ``project_id`` when one is given (API callers)."""
    stmt = select(StoredResponse).where(StoredResponse.id == response_id)
    if project_id is not None:
        stmt = stmt.where(StoredResponse.project_id == project_id)
    return session.scalar(stmt)


def add_response(session: Session, row: StoredResponse, items: Sequence[dict[str, Any]]) -> None:
    """The response and its input items, in the caller's transaction."""
    session.add(row)
    session.flush()
    session.add_all(StoredResponseItem(response_id=row.id, position=position, item_id=item["id"], item=item)
                    for position, item in enumerate(items))


def move(session: Session, response_id: str, from_statuses: Collection[str], status: str,
         body: dict[str, Any]) -> bool:
    """Set ``status`` and ``body`` if the response is in one of ``from_statuses``; True if it was."""
    result = session.execute(update(StoredResponse).where(
        StoredResponse.id == response_id, StoredResponse.status.in_(from_statuses),
    ).values(status=status, body=body))
    return cast(CursorResult, result).rowcount == 1


def delete_response(session: Session, response_id: str) -> None:
    session.execute(delete(StoredResponseItem).where(StoredResponseItem.response_id == response_id))
    session.execute(delete(StoredResponse).where(StoredResponse.id == response_id))


def input_items(session: Session, response_id: str) -> list[dict[str, Any]]:
    return list(session.scalars(select(StoredResponseItem.item).where(
        StoredResponseItem.response_id == response_id).order_by(StoredResponseItem.position)))


def chain(session: Session, response_id: str, project_id: str) -> list[StoredResponse]:
    """The response and the turns before it, oldest first; a deleted turn ends the chain there."""
    turns: list[StoredResponse] = []
    next_id: str | None = response_id
    while next_id is not None and len(turns) < MAX_CHAIN:
        row = get_response(session, next_id, project_id)
        if row is None:
            break
        turns.append(row)
        next_id = row.previous_response_id
    return turns[::-1]


def page_input_items(session: Session, response_id: str, page: PageRequest) -> tuple[list[dict[str, Any]], bool]:
    return _page(session, StoredResponseItem, StoredResponseItem.response_id, response_id, page)


# Conversations


def get_conversation(session: Session, conversation_id: str, project_id: str) -> Conversation | None:
    return session.scalar(select(Conversation).where(Conversation.id == conversation_id,
                                                     Conversation.project_id == project_id))


def lock_conversation(session: Session, conversation_id: str, project_id: str) -> Conversation | None:
    """The conversation, its row locked until the transaction ends, so appends keep their order."""
    return session.scalar(select(Conversation).where(Conversation.id == conversation_id,
                                                     Conversation.project_id == project_id).with_for_update())


def delete_conversation(session: Session, conversation_id: str) -> None:
    session.execute(delete(ConversationItem).where(ConversationItem.conversation_id == conversation_id))
    session.execute(delete(Conversation).where(Conversation.id == conversation_id))


def append_items(session: Session, conversation_id: str, items: Sequence[dict[str, Any]], created_at: int) -> None:
    """Add items at the end of the conversation (lock it first when others may append too)."""
    last = session.scalar(select(func.max(ConversationItem.position)).where(
        ConversationItem.conversation_id == conversation_id))
    start = -1 if last is None else int(last)
    session.add_all(ConversationItem(conversation_id=conversation_id, position=start + 1 + offset,
                                     item_id=item["id"], item=item, created_at=created_at)
                    for offset, item in enumerate(items))


def conversation_items(session: Session, conversation_id: str) -> list[dict[str, Any]]:
    return list(session.scalars(select(ConversationItem.item).where(
        ConversationItem.conversation_id == conversation_id).order_by(ConversationItem.position)))


def get_conversation_item(session: Session, conversation_id: str, item_id: str) -> ConversationItem | None:
    return session.scalar(select(ConversationItem).where(ConversationItem.conversation_id == conversation_id,
                                                         ConversationItem.item_id == item_id))


def delete_conversation_item(session: Session, conversation_id: str, item_id: str) -> bool:
    result = session.execute(delete(ConversationItem).where(ConversationItem.conversation_id == conversation_id,
                                                            ConversationItem.item_id == item_id))
    return cast(CursorResult, result).rowcount > 0


def page_conversation_items(session: Session, conversation_id: str,
                            page: PageRequest) -> tuple[list[dict[str, Any]], bool]:
    return _page(session, ConversationItem, ConversationItem.conversation_id, conversation_id, page)


# Listing items in their order


def _page(session: Session, entity: Any, owner: Any, owner_id: str,
          page: PageRequest) -> tuple[list[dict[str, Any]], bool]:
    """One page of an owner's items in position order, and whether more follow."""
    stmt = select(entity).where(owner == owner_id)
    position = entity.position
    backwards = page.before is not None and page.after is None
    ascending = (page.order == "asc") != backwards
    for param, cursor in (("after", page.after), ("before", page.before)):
        if cursor is None:
            continue
        at = session.scalar(select(position).where(owner == owner_id, entity.item_id == cursor))
        if at is None:
            raise UnknownCursor(param, cursor)
        later = (param == "after") == (page.order == "asc")
        stmt = stmt.where(position > at if later else position < at)
    rows = list(session.scalars(stmt.order_by(position.asc() if ascending else position.desc())
                                .limit(page.limit + 1)))
    has_more = len(rows) > page.limit
    rows = rows[:page.limit]
    if backwards:
        rows.reverse()
    return [row.item for row in rows], has_more
