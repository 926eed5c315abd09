"""POST /v1/audio/speech and GET /v1/audio/voices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.sse import sse_response
from hearth.speech.protocol import CreateSpeechRequest, VoiceList
from hearth.speech.service import SpeechService

router = APIRouter(tags=["audio"])
Speech = Annotated[SpeechService, Depends(provide(SpeechService))]


@router.post(
    "/audio/speech",
    dependencies=[Depends(require_json)],
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/mpeg": {}, "text/event-stream": {}}}},
)
async def create_speech(body: CreateSpeechRequest, caller: ProjectCaller,
                        speech: Speech) -> StreamingResponse:
    started = await speech.start(caller, body)
    if started.sse:
        return sse_response(await speech.events(started))
    return StreamingResponse(await speech.audio(started), media_type=started.media_type)


@router.get("/audio/voices", response_model=VoiceList)
async def list_voices(_: ProjectCaller, speech: Speech) -> VoiceList:
    return await speech.voices()
