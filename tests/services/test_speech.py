"""SpeechService over the fake Kokoro: audio and SSE streams, usage metering, admission, refusals."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from hearth.errors import APIError, InvalidRequest, NotFound
from hearth.speech.protocol import CreateSpeechRequest, SpeechAudioDelta, SpeechAudioDone, VoiceList
from hearth.speech.service import SpeechService
from tests.services.conftest import CALLER, Hearth

MODEL = "gpt-4o-mini-tts"
TEXT = "Hello world. How are you?"
# The fake speaks 50 ms a word at 24 kHz: five words, as 16-bit PCM.
SAMPLES = 5 * 1_200
SECONDS = 0.25


def request(**fields: Any) -> CreateSpeechRequest:
    return CreateSpeechRequest.model_validate(
        {"model": MODEL, "input": TEXT, "voice": "alloy", "response_format": "pcm", **fields})


def service(hearth: Hearth) -> SpeechService:
    return SpeechService(hearth.models, hearth.meter)


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


def test_audio_streams_every_sentence_and_is_metered(hearth: Hearth) -> None:
    """The audio is every sentence's samples; the one event counts characters, seconds and tokens."""
    async def scenario() -> tuple[str, list[bytes], int]:
        speech = await service(hearth).start(CALLER, request())
        return speech.media_type, await collect(await service(hearth).audio(speech)), speech.utterance.tokens

    media_type, pieces, tokens = asyncio.run(scenario())

    assert media_type == "audio/pcm"
    assert len(pieces) == 2 and len(b"".join(pieces)) == 2 * SAMPLES
    event = hearth.only_event()
    assert (event.kind, event.endpoint, event.model) == ("audio_speeches", "/v1/audio/speech", MODEL)
    assert (event.characters, event.seconds, event.input_tokens, event.output_tokens) == (
        len(TEXT), SECONDS, tokens, 10)
    assert hearth.runner(MODEL).admitted == 0


def test_background_speech_is_metered_as_batch(hearth: Hearth) -> None:
    """Speech made for a job is recorded with batch=True."""
    async def scenario() -> None:
        speech = await service(hearth).start(CALLER, request(), background=True)
        await collect(await service(hearth).audio(speech))

    asyncio.run(scenario())

    assert hearth.only_event(batch=True).characters == len(TEXT)


def test_events_carry_the_audio_then_usage_equal_to_the_metered(hearth: Hearth) -> None:
    """SSE: base64 deltas of the same audio, then a done event whose usage is what was metered."""
    async def scenario() -> tuple[str, list[Any]]:
        speech = await service(hearth).start(CALLER, request(stream_format="sse"))
        return speech.media_type, await collect(await service(hearth).events(speech))

    media_type, events = asyncio.run(scenario())

    assert media_type == "text/event-stream"
    *deltas, done = events
    assert all(isinstance(delta, SpeechAudioDelta) for delta in deltas)
    assert len(b"".join(base64.b64decode(delta.audio) for delta in deltas)) == 2 * SAMPLES
    assert isinstance(done, SpeechAudioDone)
    assert SpeechAudioDone.model_validate(done.model_dump(mode="json")) == done
    event = hearth.only_event()
    assert (done.usage.input_tokens, done.usage.output_tokens) == (event.input_tokens, event.output_tokens)
    assert done.usage.total_tokens == event.input_tokens + event.output_tokens
    assert event.characters == len(TEXT)


@pytest.mark.parametrize("sse", [False, True])
def test_a_closed_stream_is_metered_once_and_frees_its_place(hearth: Hearth, sse: bool) -> None:
    """Closing after the first piece records the audio made so far (one sentence) and frees the place."""
    async def scenario() -> None:
        speech = await service(hearth).start(CALLER, request(stream_format="sse" if sse else "audio"))
        stream = await (service(hearth).events(speech) if sse else service(hearth).audio(speech))
        await anext(stream)
        await stream.aclose()

    asyncio.run(scenario())

    event = hearth.only_event()
    assert (event.characters, event.seconds) == (len(TEXT), 0.1)
    assert hearth.runner(MODEL).admitted == 0


def test_a_started_speech_holds_its_place_until_the_audio_ends(hearth: Hearth) -> None:
    """The admission taken by start() is held while the audio streams and given back when it ends."""
    async def scenario() -> list[int]:
        runner = hearth.runner(MODEL)
        speech = await service(hearth).start(CALLER, request())
        held = [runner.admitted]
        await collect(await service(hearth).audio(speech))
        return [*held, runner.admitted]

    assert asyncio.run(scenario()) == [1, 0]


def test_voices_lists_every_voice_with_its_openai_alias(hearth: Hearth) -> None:
    """Each voice of the servable speech model, with its language and the OpenAI name it stands for."""
    voices = asyncio.run(service(hearth).voices())

    assert VoiceList.model_validate(voices.model_dump(mode="json")) == voices
    assert [(v.id, v.model, v.language, v.openai_alias) for v in voices.data] == [
        ("af_alloy", "fake-kokoro", "en-us", "alloy"), ("bm_fable", "fake-kokoro", "en-gb", "fable")]


@pytest.mark.parametrize(("fields", "param"), [
    ({"model": "tts-1", "instructions": "whisper it"}, "instructions"),
    ({"model": "tts-1", "stream_format": "sse"}, "stream_format"),
    ({"voice": "nobody"}, "voice"),
    ({"voice": {"id": "nobody"}}, "voice"),
    ({"input": "?! ..."}, "input"),
])
def test_refusals_name_their_field_and_free_the_place(hearth: Hearth, fields: dict[str, Any], param: str) -> None:
    """Each refusal is an InvalidRequest on its field, raised by start(); nothing metered, no place held."""
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(service(hearth).start(CALLER, request(**fields)))

    assert refused.value.param == param
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


@pytest.mark.parametrize(("model", "error", "code"), [
    ("tts-2", NotFound, "model_not_found"),
    ("whisper-1", InvalidRequest, "model_not_supported"),
])
def test_a_model_that_cannot_speak_is_refused(hearth: Hearth, model: str, error: type[APIError], code: str) -> None:
    """An unknown model is model_not_found; a transcription model is model_not_supported."""
    with pytest.raises(error) as refused:
        asyncio.run(service(hearth).start(CALLER, request(model=model)))

    assert (refused.value.param, refused.value.code) == ("model", code)
