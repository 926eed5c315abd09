"""/v1/assistants and /v1/threads: the Assistants API, v1 and v2 by the ``OpenAI-Beta`` header.

``OpenAI-Beta: assistants=v2`` (what today's SDK sends) gets the v2 shapes,
``assistants=v1`` the v1 shapes and v1's extra routes (assistant files,
message files); a request without the header is refused as the API refuses it.
"""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from hearth.assistants.protocol import (
    CreateAssistantFileRequest,
    CreateAssistantRequest,
    CreateMessageRequest,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    CreateThreadRequest,
    ModifyAssistantRequest,
    ModifyMetadataRequest,
    ModifyThreadRequest,
    SubmitToolOutputsRequest,
    Version,
)
from hearth.assistants.runs import RunService
from hearth.assistants.service import AssistantsService
from hearth.errors import InvalidRequest, NotFound
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.pagination import page_params, unknown_cursor
from hearth.http.sse import sse_named_response
from hearth.store.pagination import PageRequest, UnknownCursor

router = APIRouter(tags=["assistants"])
Assistants = Annotated[AssistantsService, Depends(provide(AssistantsService))]
Runs = Annotated[RunService, Depends(provide(RunService))]
# Every Assistants listing: 20 a page by default, at most 100.
Page = Annotated[PageRequest, Depends(page_params(default_limit=20, max_limit=100))]
JSON = [Depends(require_json)]

_MISSING_BETA = ("You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again "
                 "by setting the header 'OpenAI-Beta: assistants=v2'.")


def assistants_version(openai_beta: Annotated[str | None, Header(alias="OpenAI-Beta")] = None) -> Version:
    """The API version the caller asked for in ``OpenAI-Beta`` (e.g. ``assistants=v2``)."""
    if not openai_beta:
        raise InvalidRequest(_MISSING_BETA, code="invalid_beta")
    for part in openai_beta.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip() == "assistants":
            if value.strip() in ("v1", "v2"):
                return value.strip()  # type: ignore[return-value]
            raise InvalidRequest(f"Invalid 'OpenAI-Beta' header value 'assistants={value.strip()}'; this server "
                                 "serves 'assistants=v2' and 'assistants=v1'.", code="invalid_beta")
    raise InvalidRequest(_MISSING_BETA, code="invalid_beta")


Beta = Annotated[Version, Depends(assistants_version)]


def _v1_only(request: Request, version: Version) -> None:
    """Routes v2 removed answer as unknown URLs there."""
    if version != "v1":
        raise NotFound(f"Invalid URL ({request.method} {request.url.path})", code="unknown_url")


def _json(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body)


def _list(items: list[dict[str, Any]], has_more: bool) -> JSONResponse:
    return JSONResponse({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                         "last_id": items[-1]["id"] if items else None, "has_more": has_more})


def _listed(call: Any, *args: Any) -> JSONResponse:
    try:
        items, has_more = call(*args)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    return _list(items, has_more)


# -- assistants ----------------------------------------------------------------------------------


@router.post("/assistants", dependencies=JSON)
def create_assistant(body: CreateAssistantRequest, caller: ProjectCaller, service: Assistants,
                     version: Beta) -> Response:
    return _json(service.create_assistant(caller, body, version))


@router.get("/assistants")
def list_assistants(caller: ProjectCaller, service: Assistants, version: Beta, page: Page) -> Response:
    return _listed(service.list_assistants, caller, page, version)


@router.get("/assistants/{assistant_id}")
def retrieve_assistant(assistant_id: str, caller: ProjectCaller, service: Assistants, version: Beta) -> Response:
    return _json(service.retrieve_assistant(caller, assistant_id, version))


@router.post("/assistants/{assistant_id}", dependencies=JSON)
def modify_assistant(assistant_id: str, body: ModifyAssistantRequest, caller: ProjectCaller, service: Assistants,
                     version: Beta) -> Response:
    return _json(service.modify_assistant(caller, assistant_id, body, version))


@router.delete("/assistants/{assistant_id}")
def delete_assistant(assistant_id: str, caller: ProjectCaller, service: Assistants, version: Beta) -> Response:
    return _json(service.delete_assistant(caller, assistant_id))


@router.post("/assistants/{assistant_id}/files", dependencies=JSON)
def create_assistant_file(request: Request, assistant_id: str, body: CreateAssistantFileRequest,
                          caller: ProjectCaller, service: Assistants, version: Beta) -> Response:
    _v1_only(request, version)
    return _json(service.create_assistant_file(caller, assistant_id, body))


@router.get("/assistants/{assistant_id}/files")
def list_assistant_files(request: Request, assistant_id: str, caller: ProjectCaller, service: Assistants,
                         version: Beta, page: Page) -> Response:
    _v1_only(request, version)
    return _listed(service.list_assistant_files, caller, assistant_id, page)


@router.get("/assistants/{assistant_id}/files/{file_id}")
def retrieve_assistant_file(request: Request, assistant_id: str, file_id: str, caller: ProjectCaller,
                            service: Assistants, version: Beta) -> Response:
    _v1_only(request, version)
    return _json(service.retrieve_assistant_file(caller, assistant_id, file_id))


@router.delete("/assistants/{assistant_id}/files/{file_id}")
def delete_assistant_file(request: Request, assistant_id: str, file_id: str, caller: ProjectCaller,
                          service: Assistants, version: Beta) -> Response:
    _v1_only(request, version)
    return _json(service.delete_assistant_file(caller, assistant_id, file_id))


# -- threads (create-and-run first: /threads/runs is not a thread id) ------------------------------


@router.post("/threads/runs", dependencies=JSON)
async def create_thread_and_run(body: CreateThreadAndRunRequest, caller: ProjectCaller, runs: Runs,
                                version: Beta) -> Response:
    if body.stream:
        return sse_named_response(await runs.stream_thread_and_run(caller, body, version))
    _, run = await to_thread.run_sync(runs.create_thread_and_run, caller, body, version)
    return _json(run)


@router.post("/threads", dependencies=JSON)
def create_thread(caller: ProjectCaller, service: Assistants, version: Beta,
                  body: CreateThreadRequest | None = None) -> Response:
    return _json(service.create_thread(caller, body, version))


@router.get("/threads/{thread_id}")
def retrieve_thread(thread_id: str, caller: ProjectCaller, service: Assistants, version: Beta) -> Response:
    return _json(service.retrieve_thread(caller, thread_id, version))


@router.post("/threads/{thread_id}", dependencies=JSON)
def modify_thread(thread_id: str, body: ModifyThreadRequest, caller: ProjectCaller, service: Assistants,
                  version: Beta) -> Response:
    return _json(service.modify_thread(caller, thread_id, body, version))


@router.delete("/threads/{thread_id}")
def delete_thread(thread_id: str, caller: ProjectCaller, service: Assistants, version: Beta) -> Response:
    return _json(service.delete_thread(caller, thread_id))


# -- messages -------------------------------------------------------------------------------------


@router.post("/threads/{thread_id}/messages", dependencies=JSON)
def create_message(thread_id: str, body: CreateMessageRequest, caller: ProjectCaller, service: Assistants,
                   version: Beta) -> Response:
    return _json(service.create_message(caller, thread_id, body, version))


@router.get("/threads/{thread_id}/messages")
def list_messages(thread_id: str, caller: ProjectCaller, service: Assistants, version: Beta, page: Page,
                  run_id: str | None = None) -> Response:
    return _listed(service.list_messages, caller, thread_id, page, run_id or None, version)


@router.get("/threads/{thread_id}/messages/{message_id}")
def retrieve_message(thread_id: str, message_id: str, caller: ProjectCaller, service: Assistants,
                     version: Beta) -> Response:
    return _json(service.retrieve_message(caller, thread_id, message_id, version))


@router.post("/threads/{thread_id}/messages/{message_id}", dependencies=JSON)
def modify_message(thread_id: str, message_id: str, body: ModifyMetadataRequest, caller: ProjectCaller,
                   service: Assistants, version: Beta) -> Response:
    return _json(service.modify_message(caller, thread_id, message_id, body, version))


@router.delete("/threads/{thread_id}/messages/{message_id}")
def delete_message(request: Request, thread_id: str, message_id: str, caller: ProjectCaller,
                   service: Assistants, version: Beta) -> Response:
    if version == "v1":
        raise NotFound(f"Invalid URL ({request.method} {request.url.path})", code="unknown_url")
    return _json(service.delete_message(caller, thread_id, message_id))


@router.get("/threads/{thread_id}/messages/{message_id}/files")
def list_message_files(request: Request, thread_id: str, message_id: str, caller: ProjectCaller,
                       service: Assistants, version: Beta, page: Page) -> Response:
    _v1_only(request, version)
    return _listed(service.list_message_files, caller, thread_id, message_id, page)


@router.get("/threads/{thread_id}/messages/{message_id}/files/{file_id}")
def retrieve_message_file(request: Request, thread_id: str, message_id: str, file_id: str,
                          caller: ProjectCaller, service: Assistants, version: Beta) -> Response:
    _v1_only(request, version)
    return _json(service.retrieve_message_file(caller, thread_id, message_id, file_id))


# -- runs and steps ---------------------------------------------------------------------------------


@router.post("/threads/{thread_id}/runs", dependencies=JSON)
async def create_run(thread_id: str, body: CreateRunRequest, caller: ProjectCaller, runs: Runs,
                     version: Beta) -> Response:
    if body.stream:
        return sse_named_response(await runs.stream(caller, thread_id, body, version))
    return _json(await to_thread.run_sync(runs.create, caller, thread_id, body, version))


@router.get("/threads/{thread_id}/runs")
def list_runs(thread_id: str, caller: ProjectCaller, runs: Runs, version: Beta, page: Page) -> Response:
    return _listed(runs.list_runs, caller, thread_id, page, version)


@router.get("/threads/{thread_id}/runs/{run_id}")
def retrieve_run(thread_id: str, run_id: str, caller: ProjectCaller, runs: Runs, version: Beta) -> Response:
    return _json(runs.retrieve(caller, thread_id, run_id, version))


@router.post("/threads/{thread_id}/runs/{run_id}", dependencies=JSON)
def modify_run(thread_id: str, run_id: str, body: ModifyMetadataRequest, caller: ProjectCaller, runs: Runs,
               version: Beta) -> Response:
    return _json(runs.modify(caller, thread_id, run_id, body, version))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
def cancel_run(thread_id: str, run_id: str, caller: ProjectCaller, runs: Runs, version: Beta) -> Response:
    return _json(runs.cancel(caller, thread_id, run_id, version))


@router.post("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs", dependencies=JSON)
async def submit_tool_outputs(thread_id: str, run_id: str, body: SubmitToolOutputsRequest, caller: ProjectCaller,
                              runs: Runs, version: Beta) -> Response:
    if body.stream:
        return sse_named_response(await runs.stream_tool_outputs(caller, thread_id, run_id, body, version))
    return _json(await to_thread.run_sync(runs.submit_tool_outputs, caller, thread_id, run_id, body, version))


Include = Annotated[list[str] | None, Query(alias="include[]")]


@router.get("/threads/{thread_id}/runs/{run_id}/steps")
def list_run_steps(thread_id: str, run_id: str, caller: ProjectCaller, runs: Runs, version: Beta, page: Page,
                   include: Include = None) -> Response:
    return _listed(runs.list_steps, caller, thread_id, run_id, page, include or [], version)


@router.get("/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
def retrieve_run_step(thread_id: str, run_id: str, step_id: str, caller: ProjectCaller, runs: Runs,
                      version: Beta, include: Include = None) -> Response:
    return _json(runs.retrieve_step(caller, thread_id, run_id, step_id, include or [], version))
