"""Wire models for POST /v1/audio/transcriptions and /v1/audio/translations.

Both requests are multipart forms, so every value arrives as text: pydantic's
lax mode turns "0.2" into a float and "true" into a bool. Arrays arrive as
repeated fields (the SDKs write `include[]`, curl users often write `include`)
and objects as bracketed keys (`chunking_strategy[type]=server_vad`) or as one
JSON-encoded field; `form_values` folds all of these into one plain dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TranslationFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
TranscriptionFormat = TranslationFormat | Literal["diarized_json"]


class VadConfig(BaseModel):
    """The `server_vad` chunking strategy; defaults are the spec's."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"]
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0)
    silence_duration_ms: int = Field(default=200, ge=0)


class AudioForm(BaseModel):
    """The text fields of an audio upload; the file itself streams separately."""

    model_config = ConfigDict(extra="forbid")
    # Fields that are arrays on the wire, repeated once per item.
    array_fields: ClassVar[frozenset[str]] = frozenset()

    model: str
    prompt: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)


class CreateTranslationForm(AudioForm):
    response_format: TranslationFormat = "json"


class CreateTranscriptionForm(AudioForm):
    array_fields: ClassVar[frozenset[str]] = frozenset({
        "include", "timestamp_granularities", "languages", "keywords",
        "known_speaker_names", "known_speaker_references",
    })

    response_format: TranscriptionFormat = "json"
    language: str | None = None
    include: list[Literal["logprobs"]] = []
    timestamp_granularities: list[Literal["word", "segment"]] | None = None
    stream: bool | None = None
    chunking_strategy: Literal["auto"] | VadConfig | None = None
    # Fields of gpt-transcribe and the diarizing model; the service refuses them.
    languages: list[str] | None = None
    keywords: list[str] | None = None
    known_speaker_names: list[str] | None = None
    known_speaker_references: list[str] | None = None

    @field_validator("chunking_strategy", mode="before")
    @classmethod
    def _vad_config(cls, value: Any) -> Any:
        """Decode a JSON-encoded object and validate it as VadConfig here, so an
        error names the bad key instead of the union's failed `"auto"` branch."""
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError('expected "auto" or a JSON object') from None
        if not isinstance(value, dict):
            return value
        try:
            return VadConfig.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise ValueError(f"{where}: {error['msg']}" if where else error["msg"]) from None


def form_values(form: type[AudioForm], items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Fold multipart text fields into the dict `form` validates.

    `name[]` and repeats of an array field collect into a list; `name[key]`
    builds a nested object. Otherwise the last value of a name wins.
    """
    values: dict[str, Any] = {}
    for name, value in items:
        key, bracket, rest = name.partition("[")
        subkey = rest.removesuffix("]")
        if subkey:
            nested = values.get(key)
            if not isinstance(nested, dict):
                nested = values[key] = {}
            nested[subkey] = value
        elif bracket or key in form.array_fields:
            values.setdefault(key, []).append(value)
        else:
            values[key] = value
    return values
