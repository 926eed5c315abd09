"""Speech synthesis: from a validated request to a stream of encoded audio.

Everything that can be refused (voice, instructions, stream format, text with
nothing to speak) is checked before the first byte, so errors arrive as a JSON
envelope and never as a cut-off stream. The audio is then encoded by one
encoder for the whole response, one sentence at a time, on the model's thread.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass

from hearth import metrics
from hearth.accounting.meter import Meter, UsageEvent
from hearth.audio.encode import CONTENT_TYPES, AudioEncoder
from hearth.caller import Caller
from hearth.engines.kokoro import OPENAI_VOICES, NothingToSay, UnknownVoice, Utterance
from hearth.engines.registry import LoadedModel
from hearth.engines.runner import Admission, Lane
from hearth.errors import InvalidRequest
from hearth.models.service import ModelService
from hearth.speech.protocol import (
    CreateSpeechRequest,
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechUsage,
    Voice,
    VoiceList,
)
from hearth.streams import prime

# The classic TTS names take neither free-form instructions nor SSE, as the spec says.
CLASSIC_TTS_NAMES = frozenset({"tts-1", "tts-1-hd"})
# Usage counts output audio in 25 ms frames, the unit of Kokoro's duration predictor.
OUTPUT_TOKEN_SECONDS = 0.025
ENDPOINT = "/v1/audio/speech"


@dataclass
class Speech:
    """Synthesis that has passed every check, holds its place at the model, and is ready to stream."""

    model: LoadedModel
    utterance: Utterance
    response_format: str
    sse: bool
    caller: Caller
    model_name: str
    characters: int
    admission: Admission

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


def _encoded(speech: Speech) -> Iterator[tuple[bytes, int]]:
    """Runs on the model's thread: each sentence's encoded bytes and its sample count."""
    encoder = AudioEncoder(speech.response_format, speech.model.engine.sample_rate)
    for samples in speech.model.engine.speak(speech.utterance):
        yield encoder.encode(samples), len(samples)
    yield encoder.finish(), 0


class SpeechService:
    """Speech synthesis for any caller."""

    def __init__(self, models: ModelService, meter: Meter) -> None:
        self.models = models
        self.meter = meter

    async def start(self, caller: Caller, body: CreateSpeechRequest, *,
                    background: bool = False) -> Speech:
        """Check the request against the model and prepare the text (on the model's thread).

        The request is admitted to the model once, here, and keeps its place
        until its audio ends. ``instructions`` is accepted for gpt-4o-mini-tts
        and not applied: Kokoro cannot follow a free-form style prompt.
        """
        _check_model_options(body)
        model = await self.models.load(body.model, "speech")
        admission = await self.models.admit(model, background=background)
        try:
            utterance = await model.runner.run(model.engine.prepare, body.input, body.voice_name,
                                               body.speed, admission=admission)
        except UnknownVoice as exc:
            admission.release()
            raise InvalidRequest(str(exc), param="voice") from None
        except NothingToSay:
            admission.release()
            raise InvalidRequest("The input has nothing to speak (only punctuation or symbols).",
                                 param="input") from None
        except BaseException:
            admission.release()
            raise
        return Speech(model, utterance, body.response_format, body.stream_format == "sse",
                      caller, body.model, len(body.input), admission)

    async def voices(self) -> VoiceList:
        """Every voice of every speech model that can answer now."""
        aliases = {native: alias for alias, native in OPENAI_VOICES.items()}
        voices: list[Voice] = []
        for spec in self.models.servable("speech"):
            engine = (await self.models.get(spec)).engine
            voices.extend(
                Voice(id=name, name=name, model=spec.id, language=engine.language_of(name),
                      openai_alias=aliases.get(name))
                for name in engine.voices()
            )
        return VoiceList(data=voices)

    async def audio(self, speech: Speech) -> AsyncIterator[bytes]:
        """The encoded audio, its first piece already synthesized."""
        return await prime(self._audio(speech))

    async def _audio(self, speech: Speech) -> AsyncIterator[bytes]:
        async for data, _ in self._metered(speech):
            if data:
                yield data

    async def events(self, speech: Speech) -> AsyncIterator[SpeechAudioDelta | SpeechAudioDone]:
        """``speech.audio.delta`` events, then ``speech.audio.done`` with usage."""
        return await prime(self._events(speech))

    async def _events(self, speech: Speech) -> AsyncIterator[SpeechAudioDelta | SpeechAudioDone]:
        total_samples = 0
        async for data, samples in self._metered(speech):
            total_samples += samples
            if data:
                yield SpeechAudioDelta(audio=base64.b64encode(data).decode())
        seconds = total_samples / speech.model.engine.sample_rate
        output_tokens = round(seconds / OUTPUT_TOKEN_SECONDS)
        yield SpeechAudioDone(usage=SpeechUsage(
            input_tokens=speech.utterance.tokens, output_tokens=output_tokens,
            total_tokens=speech.utterance.tokens + output_tokens))

    async def _metered(self, speech: Speech) -> AsyncIterator[tuple[bytes, int]]:
        """The encoded pieces, recording the audio made when the stream ends, however it ends."""
        samples = 0
        started = time.perf_counter()
        pieces = speech.model.runner.stream(lambda: _encoded(speech), admission=speech.admission)
        try:
            async with aclosing(pieces):
                async for data, count in pieces:
                    samples += count
                    yield data, count
        finally:
            seconds = samples / speech.model.engine.sample_rate
            metrics.record_real_time_factor(speech.model.spec.id, "speech", time.perf_counter() - started, seconds)
            self.meter.record(UsageEvent(
                speech.caller, kind="audio_speeches", endpoint=ENDPOINT, model=speech.model_name,
                batch=speech.admission.lane is Lane.background, characters=speech.characters,
                input_tokens=speech.utterance.tokens,
                output_tokens=round(seconds / OUTPUT_TOKEN_SECONDS), seconds=seconds))
