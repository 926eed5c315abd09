"""Wire models for POST /v1/audio/speech (CreateSpeechRequest and its stream events)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class VoiceRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str


class CreateSpeechRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    input: str = Field(min_length=1, max_length=4096)
    voice: str | VoiceRef
    instructions: str | None = Field(default=None, max_length=4096)
    response_format: AudioFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class SpeechUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class SpeechAudioDelta(BaseModel):
    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str


class SpeechAudioDone(BaseModel):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: SpeechUsage


class Voice(BaseModel):
    """One voice in GET /v1/audio/voices (a Hearth extension: the spec lists no such call)."""

    object: Literal["audio.voice"] = "audio.voice"
    id: str
    name: str
    model: str
    language: str
    openai_alias: str | None = None


class VoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Voice]
