"""The Conversations API: a project's stored list of items that responses read and extend.

Items are checked and normalized exactly as a response's input is
(``translate.normalize_item``), so what a conversation holds is always
something a response can continue from. Every object carries its project;
another project's ids are 404s.
"""

from __future__ import annotations

from typing import Any

from hearth.caller import Caller
from hearth.errors import NotFound
from hearth.responses import translate
from hearth.responses.protocol import (
    AddItemsRequest,
    ConversationObject,
    CreateConversationRequest,
    DeletedConversation,
    ItemList,
    UpdateConversationRequest,
)
from hearth.store import responses as repo
from hearth.store.db import Database
from hearth.store.ids import new_id, now
from hearth.store.pagination import PageRequest
from hearth.store.tables import Conversation


def not_found(conversation_id: str) -> NotFound:
    return NotFound(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")


def _object(row: Conversation) -> ConversationObject:
    return ConversationObject(id=row.id, created_at=row.created_at, metadata=row.metadata_ or {})


class ConversationService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, caller: Caller, body: CreateConversationRequest) -> ConversationObject:
        items = translate.normalize_input(body.items, "items")
        created = now()
        with self.db.session() as session:
            row = Conversation(id=new_id("conv_"), organization_id=caller.organization_id,
                               project_id=caller.project_id, metadata_=body.metadata, created_at=created)
            session.add(row)
            session.flush()
            repo.append_items(session, row.id, items, created)
            return _object(row)

    def _get(self, session: Any, caller: Caller, conversation_id: str) -> Conversation:
        row = repo.get_conversation(session, conversation_id, caller.project_id)
        if row is None:
            raise not_found(conversation_id)
        return row

    def retrieve(self, caller: Caller, conversation_id: str) -> ConversationObject:
        with self.db.session() as session:
            return _object(self._get(session, caller, conversation_id))

    def update(self, caller: Caller, conversation_id: str, body: UpdateConversationRequest) -> ConversationObject:
        with self.db.session() as session:
            row = self._get(session, caller, conversation_id)
            row.metadata_ = body.metadata
            return _object(row)

    def delete(self, caller: Caller, conversation_id: str) -> DeletedConversation:
        with self.db.session() as session:
            self._get(session, caller, conversation_id)
            repo.delete_conversation(session, conversation_id)
        return DeletedConversation(id=conversation_id)

    def list_items(self, caller: Caller, conversation_id: str, page: PageRequest) -> ItemList:
        with self.db.session() as session:
            self._get(session, caller, conversation_id)
            items, has_more = repo.page_conversation_items(session, conversation_id, page)
            return ItemList.of(items, has_more)

    def add_items(self, caller: Caller, conversation_id: str, body: AddItemsRequest) -> ItemList:
        items = translate.normalize_input(body.items, "items")
        with self.db.session() as session:
            if repo.lock_conversation(session, conversation_id, caller.project_id) is None:
                raise not_found(conversation_id)
            repo.append_items(session, conversation_id, items, now())
        return ItemList.of(items, False)

    def retrieve_item(self, caller: Caller, conversation_id: str, item_id: str) -> dict[str, Any]:
        with self.db.session() as session:
            self._get(session, caller, conversation_id)
            row = repo.get_conversation_item(session, conversation_id, item_id)
            if row is None:
                raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")
            return dict(row.item)

    def delete_item(self, caller: Caller, conversation_id: str, item_id: str) -> ConversationObject:
        with self.db.session() as session:
            row = self._get(session, caller, conversation_id)
            if not repo.delete_conversation_item(session, conversation_id, item_id):
                raise NotFound(f"Item with id '{item_id}' not found.", param="item_id")
            return _object(row)
