"""POST /v1/audio/transcriptions and POST /v1/audio/translations."""

from __future__ import annotations

from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from hearth.api.auth import ProjectCaller
from hearth.api.deps import load_model, resolve_model
from hearth.api.multipart import StreamingForm
from hearth.api.sse import sse_response
from hearth.engines.registry import LoadedModel
from hearth.protocol.transcriptions import CreateTranscriptionForm, CreateTranslationForm
from hearth.services.transcriptions import (
    Job,
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

_RESPONSES = {200: {"content": {"application/json": {}, "text/plain": {},
                                "text/event-stream": {}}}}
# Logged when the client left before the transcript was ready (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


@router.post("/audio/transcriptions", response_model=None, responses=_RESPONSES)
async def create_transcription(request: Request, _: ProjectCaller) -> Response:
    upload = await _receive(request)
    with upload.file:
        form = parse_form(CreateTranscriptionForm, upload.items)
        job = plan_transcription(await _model(request, form.model), form)
        return await _respond(request, job, upload.file)


@router.post("/audio/translations", response_model=None, responses=_RESPONSES)
async def create_translation(request: Request, _: ProjectCaller) -> Response:
    upload = await _receive(request)
    with upload.file:
        form = parse_form(CreateTranslationForm, upload.items)
        job = plan_translation(await _model(request, form.model), form)
        return await _respond(request, job, upload.file)


async def _receive(request: Request) -> Upload:
    limit = request.app.state.settings.max_audio_upload_bytes
    return await receive_upload(StreamingForm(request), limit)


async def _model(request: Request, name: str) -> LoadedModel:
    return await load_model(request, resolve_model(request, name, "transcription"))


async def _respond(request: Request, job: Job, audio_file: BinaryIO) -> Response:
    # Starting decodes the audio, so the upload may be closed once this returns.
    running = await start(job, audio_file)
    if job.stream:
        return sse_response(sse_stream(running))
    if not await finish(running, request.is_disconnected):
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    body = render(running)
    if isinstance(body, str):
        return PlainTextResponse(body)
    return JSONResponse(body)
