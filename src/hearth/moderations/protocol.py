"""Wire models for POST /v1/moderations (CreateModerationRequest, CreateModerationResponse)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from hearth.wire import one_of

DEFAULT_MODEL = "omni-moderation-latest"

InputType = Literal["text", "image"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: StrictStr


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["image_url"]
    image_url: ImageURL


ModerationPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class CreateModerationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A string, strings (one result each), or the parts of one multi-modal input.
    input: Annotated[
        StrictStr | list[StrictStr] | list[ModerationPart],
        one_of('a string, an array of strings, or an array of parts {"type": "text", "text": ...} '
               'and {"type": "image_url", "image_url": {"url": ...}}'),
    ]
    model: str = DEFAULT_MODEL


class ModerationResult(BaseModel):
    flagged: bool
    # Keyed by the spec's category names: "harassment/threatening", "self-harm/intent", ...
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[InputType]]


class CreateModerationResponse(BaseModel):
    id: str
    model: str
    results: list[ModerationResult]
