"""POST /v1/audio/speech and GET /v1/audio/voices."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from hearth.api.auth import ProjectCaller
from hearth.api.deps import load_model, registry_of, require_json, resolve_model
from hearth.api.sse import sse_response
from hearth.engines.kokoro import OPENAI_VOICES
from hearth.protocol.speech import CreateSpeechRequest, Voice, VoiceList
from hearth.services.speech import audio_stream, sse_stream, start_speech

router = APIRouter(tags=["audio"])


@router.post(
    "/audio/speech",
    dependencies=[Depends(require_json)],
    response_class=StreamingResponse,
    responses={200: {"content": {"audio/mpeg": {}, "text/event-stream": {}}}},
)
async def create_speech(body: CreateSpeechRequest, request: Request,
                        _: ProjectCaller) -> StreamingResponse:
    model = await load_model(request, resolve_model(request, body.model, "speech"))
    speech = await start_speech(model, body)
    if speech.sse:
        return sse_response(sse_stream(speech))
    return StreamingResponse(audio_stream(speech), media_type=speech.media_type)


@router.get("/audio/voices", response_model=VoiceList)
async def list_voices(request: Request, _: ProjectCaller) -> VoiceList:
    registry = registry_of(request)
    aliases = {native: alias for alias, native in OPENAI_VOICES.items()}
    voices: list[Voice] = []
    for spec in registry.catalog.models:
        if spec.kind != "speech" or not registry.is_servable(spec):
            continue
        engine = (await registry.get(spec)).engine
        voices.extend(
            Voice(id=name, name=name, model=spec.id, language=engine.language_of(name),
                  openai_alias=aliases.get(name))
            for name in engine.voices()
        )
    return VoiceList(data=voices)
