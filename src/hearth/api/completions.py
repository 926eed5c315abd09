"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from hearth.api.auth import ProjectCaller
from hearth.api.deps import load_model, require_json, resolve_model
from hearth.api.sse import sse_response
from hearth.protocol.completions import CreateCompletionRequest, TextCompletion
from hearth.services.completions import create_completion, open_completion_stream

router = APIRouter(tags=["completions"])


@router.post(
    "/completions",
    dependencies=[Depends(require_json)],
    response_model=TextCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_text_completion(body: CreateCompletionRequest, request: Request,
                                 _: ProjectCaller) -> Response:
    model = await load_model(request, resolve_model(request, body.model, "chat"))
    if body.stream:
        return sse_response(await open_completion_stream(model, body))
    completion = await create_completion(model, body)
    return Response(completion.model_dump_json(), media_type="application/json")
