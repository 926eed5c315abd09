"""Wire models for /v1/images/generations, /v1/images/edits and /v1/images/variations.

Generations are JSON; edits and variations are multipart forms, whose text
fields arrive as strings (pydantic's lax mode reads "2" as 2 and "true" as
True). Which fields a model accepts depends on the model family the request
names (dall-e-2, dall-e-3, the GPT image models): the service checks that.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ResponseFormat = Literal["url", "b64_json"]
OutputFormat = Literal["png", "jpeg", "webp"]
Background = Literal["transparent", "opaque", "auto"]


class CreateImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None
    n: int | None = Field(default=None, ge=1, le=10)
    quality: Literal["standard", "hd", "low", "medium", "high", "auto"] | None = None
    response_format: ResponseFormat | None = None
    output_format: OutputFormat | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    stream: bool | None = None
    partial_images: int | None = Field(default=None, ge=0, le=3)
    size: str | None = None
    moderation: Literal["low", "auto"] | None = None
    background: Background | None = None
    style: Literal["vivid", "natural"] | None = None
    user: str | None = None


class ImageEditForm(BaseModel):
    """The text fields of an edit; the images and the mask are file parts."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None
    response_format: ResponseFormat | None = None
    output_format: OutputFormat | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    background: Background | None = None
    quality: Literal["standard", "low", "medium", "high", "auto"] | None = None
    input_fidelity: Literal["high", "low"] | None = None
    stream: bool | None = None
    partial_images: int | None = Field(default=None, ge=0, le=3)
    user: str | None = None


class ImageVariationForm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    n: int | None = Field(default=None, ge=1, le=10)
    response_format: ResponseFormat | None = None
    size: Literal["256x256", "512x512", "1024x1024"] | None = None
    user: str | None = None


class Image(BaseModel):
    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class InputTokensDetails(BaseModel):
    text_tokens: int
    image_tokens: int


class ImagesUsage(BaseModel):
    total_tokens: int
    input_tokens: int
    output_tokens: int
    input_tokens_details: InputTokensDetails


class ImagesResponse(BaseModel):
    created: int
    data: list[Image]
    background: Literal["transparent", "opaque"] | None = None
    output_format: OutputFormat | None = None
    size: str | None = None
    quality: Literal["low", "medium", "high"] | None = None
    usage: ImagesUsage | None = None
