"""TranscriptionService over the fake Whisper: whole and streamed transcripts, metering, refusals.

The audio is a real (silent) WAV file decoded by Hearth's own decoder; only
the recognition is faked, as three fixed segments.
"""

from __future__ import annotations

import asyncio
import io
import wave
from typing import Any

import pytest

from hearth.errors import APIError, InvalidRequest, NotFound
from hearth.transcriptions.protocol import CreateTranscriptionForm, CreateTranslationForm
from hearth.transcriptions.service import Job, Running, TranscriptionService, plan_transcription, plan_translation
from tests.services.conftest import CALLER, Hearth

MODEL = "whisper-1"
TRANSCRIPT = "Hello there. General Kenobi. You are a bold one."
SECONDS = 1.5
AUDIO_TOKENS = 75  # 50 encoder frames a second
PROMPT = "lightsaber duel"
SEGMENT_TOKENS = [2, 2, 5]  # the fake's tokens: a word each


def wav(seconds: float = SECONDS) -> io.BytesIO:
    """Silence as a 16 kHz mono 16-bit WAV file."""
    data = io.BytesIO()
    with wave.open(data, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\0\0" * round(seconds * 16_000))
    data.seek(0)
    return data


def transcription(**fields: Any) -> Job:
    return plan_transcription(CreateTranscriptionForm.model_validate({"model": MODEL, "prompt": PROMPT, **fields}))


def service(hearth: Hearth) -> TranscriptionService:
    return TranscriptionService(hearth.models, hearth.meter, max_upload_bytes=1024 * 1024)


async def never_disconnected() -> bool:
    return False


def test_a_transcript_is_rendered_and_metered_by_what_was_heard(hearth: Hearth) -> None:
    """start + finish + render: the transcript in json; the one event counts the audio and the tokens."""
    audio = wav()

    async def scenario() -> tuple[bool, Any]:
        running = await service(hearth).start(CALLER, transcription(), audio)
        return await service(hearth).finish(running, never_disconnected), TranscriptionService.render(running)

    finished, body = asyncio.run(scenario())

    assert finished and body == {"text": TRANSCRIPT, "usage": {"type": "duration", "seconds": 2}}
    event = hearth.only_event()
    assert (event.kind, event.endpoint, event.model) == ("audio_transcriptions", "/v1/audio/transcriptions", MODEL)
    assert (event.seconds, event.input_audio_tokens, event.input_tokens, event.output_tokens) == (
        SECONDS, AUDIO_TOKENS, AUDIO_TOKENS + len(PROMPT.split()), sum(SEGMENT_TOKENS))
    assert hearth.runner(MODEL).admitted == 0
    assert audio.closed


def test_a_translation_is_metered_at_its_own_endpoint_as_batch(hearth: Hearth) -> None:
    """A translation done for a job is recorded under /v1/audio/translations with batch=True."""
    job = plan_translation(CreateTranslationForm(model=MODEL))

    async def scenario() -> None:
        running = await service(hearth).start(CALLER, job, wav(), background=True)
        await service(hearth).finish(running, never_disconnected)

    asyncio.run(scenario())

    assert hearth.only_event(batch=True).endpoint == "/v1/audio/translations"


def test_events_stream_the_segments_then_usage_equal_to_the_metered(hearth: Hearth) -> None:
    """A delta per segment, then transcript.text.done whose token usage is what was metered."""
    async def scenario() -> list[dict[str, Any]]:
        running = await service(hearth).start(CALLER, transcription(stream=True), wav())
        return [event async for event in TranscriptionService.events(running)]

    *deltas, done = asyncio.run(scenario())

    assert "".join(delta["delta"] for delta in deltas) == done["text"] == TRANSCRIPT
    assert {delta["type"] for delta in deltas} == {"transcript.text.delta"}
    assert done["type"] == "transcript.text.done"
    event = hearth.only_event()
    usage = done["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (event.input_tokens, event.output_tokens)
    assert usage["input_token_details"]["audio_tokens"] == event.input_audio_tokens
    assert hearth.runner(MODEL).admitted == 0


def test_closed_events_are_metered_once_and_free_the_place(hearth: Hearth) -> None:
    """Closing after the first delta records the tokens decoded so far, gives the place back and
    closes the audio file."""
    audio = wav()

    async def scenario() -> None:
        running = await service(hearth).start(CALLER, transcription(stream=True), audio)
        events = TranscriptionService.events(running)
        await anext(events)
        await events.aclose()
        await hearth.runner(MODEL).run(lambda: None)  # queued behind the engine's close, so runs after it

    asyncio.run(scenario())

    assert hearth.only_event().output_tokens == SEGMENT_TOKENS[0]
    assert hearth.runner(MODEL).admitted == 0
    assert audio.closed


def test_a_client_that_leaves_stops_the_transcript(hearth: Hearth) -> None:
    """finish() returns False when the client has gone; what was decoded is metered, the place freed."""
    async def gone() -> bool:
        return True

    async def scenario() -> tuple[bool, Running]:
        running = await service(hearth).start(CALLER, transcription(), wav())
        return await service(hearth).finish(running, gone), running

    finished, running = asyncio.run(scenario())

    assert not finished and len(running.done) == 1
    assert hearth.only_event().output_tokens == SEGMENT_TOKENS[0]
    assert hearth.runner(MODEL).admitted == 0


@pytest.mark.parametrize(("audio", "fields", "param"), [
    (b"this is not audio at all", {}, "file"),
    (b"", {}, "file"),
    (wav().getvalue(), {"language": "xx"}, "language"),
])
def test_refusals_of_the_audio_or_language_are_raised_by_start(hearth: Hearth, audio: bytes,
                                                               fields: dict[str, Any], param: str) -> None:
    """Undecodable audio and an unknown language are 400s from start(): nothing metered, place freed."""
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(service(hearth).start(CALLER, transcription(**fields), io.BytesIO(audio)))

    assert refused.value.param == param
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


@pytest.mark.parametrize(("fields", "param"), [
    ({"response_format": "diarized_json"}, "response_format"),
    ({"known_speaker_names": ["Obi-Wan"]}, "known_speaker_names"),
    ({"timestamp_granularities": ["word"]}, "timestamp_granularities"),
    ({"include": ["logprobs"], "response_format": "text"}, "include"),
    ({"stream": True, "response_format": "srt"}, "stream"),
])
def test_options_whisper_cannot_honour_are_refused_when_planning(fields: dict[str, Any], param: str) -> None:
    """Formats and fields that need other models, and option combinations the spec forbids, are 400s."""
    with pytest.raises(InvalidRequest) as refused:
        transcription(**fields)

    assert refused.value.param == param


@pytest.mark.parametrize(("model", "error", "code"), [
    ("whisper-2", NotFound, "model_not_found"),
    ("tts-1", InvalidRequest, "model_not_supported"),
])
def test_a_model_that_cannot_transcribe_is_refused(hearth: Hearth, model: str, error: type[APIError],
                                                   code: str) -> None:
    """An unknown model is model_not_found; a speech model is model_not_supported."""
    with pytest.raises(error) as refused:
        asyncio.run(service(hearth).start(CALLER, transcription(model=model), wav()))

    assert (refused.value.param, refused.value.code) == ("model", code)
