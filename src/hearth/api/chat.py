"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from hearth.api.auth import ProjectCaller
from hearth.api.deps import load_model, require_json, resolve_model
from hearth.api.sse import sse_response
from hearth.protocol.chat import ChatCompletion, CreateChatCompletionRequest
from hearth.services.chat import create_chat_completion, open_chat_stream

router = APIRouter(tags=["chat"])


@router.post(
    "/chat/completions",
    dependencies=[Depends(require_json)],
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_chat(body: CreateChatCompletionRequest, request: Request,
                      _: ProjectCaller) -> Response:
    model = await load_model(request, resolve_model(request, body.model, "chat"))
    if body.stream:
        return sse_response(await open_chat_stream(model, body))
    completion = await create_chat_completion(model, body)
    return Response(completion.model_dump_json(), media_type="application/json")
