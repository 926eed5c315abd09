"""/v1/responses (create, retrieve or replay, delete, cancel, input items) and /v1/conversations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi import Response as HTTPResponse

from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.pagination import page_params, unknown_cursor
from hearth.http.sse import sse_typed_response
from hearth.responses.conversations import ConversationService
from hearth.responses.protocol import (
    AddItemsRequest,
    ConversationObject,
    CreateConversationRequest,
    CreateResponseRequest,
    DeletedConversation,
    DeletedResponse,
    ItemList,
    Response,
    UpdateConversationRequest,
)
from hearth.responses.service import ResponseService
from hearth.store.pagination import PageRequest, UnknownCursor

router = APIRouter(tags=["responses"])
Responses = Annotated[ResponseService, Depends(provide(ResponseService))]
Conversations = Annotated[ConversationService, Depends(provide(ConversationService))]
# Items are listed 20 a page by default, at most 100.
ItemsPage = Annotated[PageRequest, Depends(page_params(default_limit=20, max_limit=100))]
Include = Annotated[list[str] | None, Query(alias="include[]")]


def _json(response: Response) -> HTTPResponse:
    return HTTPResponse(response.model_dump_json(), media_type="application/json")


@router.post("/responses", dependencies=[Depends(require_json)], response_model=Response,
             responses={200: {"content": {"text/event-stream": {}}}})
async def create_response(body: CreateResponseRequest, caller: ProjectCaller, responses: Responses) -> HTTPResponse:
    if body.stream:
        return sse_typed_response(await responses.stream(caller, body))
    return _json(await responses.create(caller, body))


@router.get("/responses/{response_id}", response_model=Response,
            responses={200: {"content": {"text/event-stream": {}}}})
async def retrieve_response(response_id: str, caller: ProjectCaller, responses: Responses,
                            stream: Annotated[bool, Query()] = False,
                            starting_after: Annotated[int | None, Query()] = None,
                            include: Include = None) -> HTTPResponse:
    if stream:
        return sse_typed_response(await responses.replay(caller, response_id, starting_after))
    return _json(responses.retrieve(caller, response_id))


@router.delete("/responses/{response_id}")
def delete_response(response_id: str, caller: ProjectCaller, responses: Responses) -> DeletedResponse:
    return responses.delete(caller, response_id)


@router.post("/responses/{response_id}/cancel", response_model=Response)
def cancel_response(response_id: str, caller: ProjectCaller, responses: Responses) -> HTTPResponse:
    return _json(responses.cancel(caller, response_id))


@router.get("/responses/{response_id}/input_items")
def list_input_items(response_id: str, caller: ProjectCaller, responses: Responses, page: ItemsPage,
                     include: Include = None) -> ItemList:
    try:
        return responses.input_items(caller, response_id, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None


# -- conversations ----------------------------------------------------------------------


@router.post("/conversations", dependencies=[Depends(require_json)])
def create_conversation(body: CreateConversationRequest, caller: ProjectCaller,
                        conversations: Conversations) -> ConversationObject:
    return conversations.create(caller, body)


@router.get("/conversations/{conversation_id}")
def retrieve_conversation(conversation_id: str, caller: ProjectCaller,
                          conversations: Conversations) -> ConversationObject:
    return conversations.retrieve(caller, conversation_id)


@router.post("/conversations/{conversation_id}", dependencies=[Depends(require_json)])
def update_conversation(conversation_id: str, body: UpdateConversationRequest, caller: ProjectCaller,
                        conversations: Conversations) -> ConversationObject:
    return conversations.update(caller, conversation_id, body)


@router.delete("/conversations/{conversation_id}")
def delete_conversation(conversation_id: str, caller: ProjectCaller,
                        conversations: Conversations) -> DeletedConversation:
    return conversations.delete(caller, conversation_id)


@router.get("/conversations/{conversation_id}/items")
def list_conversation_items(conversation_id: str, caller: ProjectCaller, conversations: Conversations,
                            page: ItemsPage, include: Include = None) -> ItemList:
    try:
        return conversations.list_items(caller, conversation_id, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None


@router.post("/conversations/{conversation_id}/items", dependencies=[Depends(require_json)])
def add_conversation_items(conversation_id: str, body: AddItemsRequest, caller: ProjectCaller,
                           conversations: Conversations, include: Include = None) -> ItemList:
    return conversations.add_items(caller, conversation_id, body)


@router.get("/conversations/{conversation_id}/items/{item_id}")
def retrieve_conversation_item(conversation_id: str, item_id: str, caller: ProjectCaller,
                               conversations: Conversations, include: Include = None) -> dict:
    return conversations.retrieve_item(caller, conversation_id, item_id)


@router.delete("/conversations/{conversation_id}/items/{item_id}")
def delete_conversation_item(conversation_id: str, item_id: str, caller: ProjectCaller,
                             conversations: Conversations) -> ConversationObject:
    return conversations.delete_item(caller, conversation_id, item_id)
