"""POST /v1/audio/transcriptions and POST /v1/audio/translations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from hearth.api.auth import ProjectCaller
from hearth.api.deps import load_model, resolve_model
from hearth.api.multipart import StreamingForm
from hearth.api.sse import sse_response
from hearth.engines.registry import LoadedModel
from hearth.protocol.transcriptions import CreateTranscriptionForm, CreateTranslationForm
from hearth.services.transcriptions import (
    Running,
    Upload,
    finish,
    parse_form,
    plan_transcription,
    plan_translation,
    receive_upload,
    render,
    sse_stream,
    start,
)

router = APIRouter(tags=["audio"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/plain": {}, "text/event-stream": {}}}}
# Logged when the client left before the transcript was ready (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


@router.post("/audio/transcriptions", response_model=None, responses=_RESPONSES)
async def create_transcription(request: Request, _: ProjectCaller) -> Response:
    upload = await _receive(request)
    with _closed_on_error(upload.file):
        form = parse_form(CreateTranscriptionForm, upload.items)
        job = plan_transcription(await _model(request, form.model), form)
        running = await start(job, upload.file)
    return await _respond(request, running)


@router.post("/audio/translations", response_model=None, responses=_RESPONSES)
async def create_translation(request: Request, _: ProjectCaller) -> Response:
    upload = await _receive(request)
    with _closed_on_error(upload.file):
        form = parse_form(CreateTranslationForm, upload.items)
        job = plan_translation(await _model(request, form.model), form)
        running = await start(job, upload.file)
    return await _respond(request, running)


async def _receive(request: Request) -> Upload:
    limit = request.app.state.settings.max_audio_upload_bytes
    return await receive_upload(StreamingForm(request), limit)


async def _model(request: Request, name: str) -> LoadedModel:
    return await load_model(request, resolve_model(request, name, "transcription"))


@contextmanager
def _closed_on_error(audio_file: BinaryIO) -> Iterator[None]:
    """Close the upload if the request fails before its transcription takes it over."""
    try:
        yield
    except BaseException:
        audio_file.close()
        raise


async def _respond(request: Request, running: Running) -> Response:
    if running.job.stream:
        return sse_response(sse_stream(running))
    if not await finish(running, request.is_disconnected):
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    body = render(running)
    if isinstance(body, str):
        return PlainTextResponse(body)
    return JSONResponse(body)
