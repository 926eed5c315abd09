"""POST /v1/chat/completions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from hearth.chat.protocol import ChatCompletion, CreateChatCompletionRequest
from hearth.chat.service import ChatService
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.disconnect import unless_client_leaves
from hearth.http.sse import sse_response

router = APIRouter(tags=["chat"])
Chat = Annotated[ChatService, Depends(provide(ChatService))]


@router.post(
    "/chat/completions",
    dependencies=[Depends(require_json)],
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_chat(body: CreateChatCompletionRequest, caller: ProjectCaller,
                      chat: Chat, request: Request) -> Response:
    if body.stream:
        return sse_response(await chat.stream(caller, body), done=True)
    completion = await unless_client_leaves(request, chat.create(caller, body))
    return Response(completion.model_dump_json(), media_type="application/json")
