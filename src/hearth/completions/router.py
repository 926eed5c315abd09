"""POST /v1/completions (legacy text completions)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from hearth.completions.protocol import CreateCompletionRequest, TextCompletion
from hearth.completions.service import CompletionService
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.disconnect import unless_client_leaves
from hearth.http.sse import sse_response

router = APIRouter(tags=["completions"])
Completions = Annotated[CompletionService, Depends(provide(CompletionService))]


@router.post(
    "/completions",
    dependencies=[Depends(require_json)],
    response_model=TextCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def create_text_completion(body: CreateCompletionRequest, caller: ProjectCaller,
                                 completions: Completions, request: Request) -> Response:
    if body.stream:
        return sse_response(await completions.stream(caller, body), done=True)
    completion = await unless_client_leaves(request, completions.create(caller, body))
    return Response(completion.model_dump_json(), media_type="application/json")
