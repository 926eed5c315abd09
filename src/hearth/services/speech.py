"""Speech synthesis: from a validated request to a stream of encoded audio.

Everything that can be refused (voice, instructions, stream format, text with
nothing to speak) is checked before the first byte, so errors arrive as a JSON
envelope and never as a cut-off stream. The audio is then encoded by one
encoder for the whole response, one sentence at a time, on the model's thread.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from hearth.api.errors import InvalidRequest
from hearth.api.sse import sse_event
from hearth.audio.encode import CONTENT_TYPES, AudioEncoder
from hearth.engines.kokoro import NothingToSay, UnknownVoice, Utterance
from hearth.engines.registry import LoadedModel
from hearth.protocol.speech import (
    CreateSpeechRequest,
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechUsage,
)

# The classic TTS names take neither free-form instructions nor SSE, as the spec says.
CLASSIC_TTS_NAMES = frozenset({"tts-1", "tts-1-hd"})
# Usage counts output audio in 25 ms frames, the unit of Kokoro's duration predictor.
OUTPUT_TOKEN_SECONDS = 0.025


@dataclass
class Speech:
    """Synthesis that has passed every check and is ready to stream."""

    model: LoadedModel
    utterance: Utterance
    response_format: str
    sse: bool

    @property
    def media_type(self) -> str:
        return "text/event-stream" if self.sse else CONTENT_TYPES[self.response_format]


def _check_model_options(body: CreateSpeechRequest) -> None:
    if body.model not in CLASSIC_TTS_NAMES:
        return
    if body.instructions:
        raise InvalidRequest(f"`instructions` is not supported by {body.model}; "
                             "use gpt-4o-mini-tts.", param="instructions")
    if body.stream_format == "sse":
        raise InvalidRequest(f"stream_format `sse` is not supported by {body.model}; "
                             "use gpt-4o-mini-tts.", param="stream_format")


async def start_speech(model: LoadedModel, body: CreateSpeechRequest) -> Speech:
    """Check the request against the model and prepare the text (on the model's thread).

    ``instructions`` is accepted for gpt-4o-mini-tts and not applied: Kokoro
    cannot follow a free-form style prompt.
    """
    _check_model_options(body)
    engine = model.engine
    try:
        utterance = await model.runner.run(engine.prepare, body.input, body.voice_name,
                                           body.speed)
    except UnknownVoice as exc:
        raise InvalidRequest(str(exc), param="voice") from None
    except NothingToSay:
        raise InvalidRequest("The input has nothing to speak (only punctuation or symbols).",
                             param="input") from None
    return Speech(model, utterance, body.response_format, body.stream_format == "sse")


def _encoded(speech: Speech) -> Iterator[tuple[bytes, int]]:
    """Runs on the model's thread: each sentence's encoded bytes and its sample count."""
    encoder = AudioEncoder(speech.response_format, speech.model.engine.sample_rate)
    for samples in speech.model.engine.speak(speech.utterance):
        yield encoder.encode(samples), len(samples)
    yield encoder.finish(), 0


async def audio_stream(speech: Speech) -> AsyncIterator[bytes]:
    async for data, _ in speech.model.runner.stream(lambda: _encoded(speech)):
        if data:
            yield data


async def sse_stream(speech: Speech) -> AsyncIterator[bytes]:
    total_samples = 0
    async for data, samples in speech.model.runner.stream(lambda: _encoded(speech)):
        total_samples += samples
        if data:
            yield sse_event(SpeechAudioDelta(audio=base64.b64encode(data).decode()))
    seconds = total_samples / speech.model.engine.sample_rate
    output_tokens = round(seconds / OUTPUT_TOKEN_SECONDS)
    yield sse_event(SpeechAudioDone(usage=SpeechUsage(
        input_tokens=speech.utterance.tokens, output_tokens=output_tokens,
        total_tokens=speech.utterance.tokens + output_tokens)))
