"""POST /v1/audio/transcriptions and POST /v1/audio/translations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from hearth.caller import Caller
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide
from hearth.http.multipart import StreamingForm
from hearth.http.openapi import multipart_body
from hearth.http.sse import sse_response
from hearth.transcriptions.protocol import CreateTranscriptionForm, CreateTranslationForm
from hearth.transcriptions.service import (
    Job,
    TranscriptionService,
    Upload,
    parse_form,
    plan_transcription,
    plan_translation,
)

router = APIRouter(tags=["audio"])
Transcriptions = Annotated[TranscriptionService, Depends(provide(TranscriptionService))]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/plain": {}, "text/event-stream": {}}}}
_AUDIO = "The audio: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm."
# Logged when the client left before the transcript was ready (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


@router.post("/audio/transcriptions", response_model=None, responses=_RESPONSES,
             openapi_extra=multipart_body(CreateTranscriptionForm, {"file": _AUDIO}))
async def create_transcription(request: Request, caller: ProjectCaller,
                               service: Transcriptions) -> Response:
    upload = await service.receive(StreamingForm(request))
    with _closed_on_error(upload.file):
        job = plan_transcription(parse_form(CreateTranscriptionForm, upload.items))
    return await _run(request, caller, service, job, upload)


@router.post("/audio/translations", response_model=None, responses=_RESPONSES,
             openapi_extra=multipart_body(CreateTranslationForm, {"file": _AUDIO}))
async def create_translation(request: Request, caller: ProjectCaller,
                             service: Transcriptions) -> Response:
    upload = await service.receive(StreamingForm(request))
    with _closed_on_error(upload.file):
        job = plan_translation(parse_form(CreateTranslationForm, upload.items))
    return await _run(request, caller, service, job, upload)


@contextmanager
def _closed_on_error(audio_file: BinaryIO) -> Iterator[None]:
    """Close the upload if the request fails before its transcription takes it over."""
    try:
        yield
    except BaseException:
        audio_file.close()
        raise


async def _run(request: Request, caller: Caller, service: TranscriptionService, job: Job,
               upload: Upload) -> Response:
    with _closed_on_error(upload.file):
        running = await service.start(caller, job, upload.file)
    if job.stream:
        return sse_response(service.events(running))
    if not await service.finish(running, request.is_disconnected):
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    body = service.render(running)
    if isinstance(body, str):
        return PlainTextResponse(body)
    return JSONResponse(body)
