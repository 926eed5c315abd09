"""Wire models for POST /v1/completions (CreateCompletionRequest and its responses)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from hearth.chat.protocol import (
    Choices,
    CompletionUsage,
    LogitBias,
    Penalty,
    Seed,
    Stop,
    StreamOptions,
    Temperature,
    TopP,
    omitted_when_none,
)
from hearth.wire import one_of

# The spec's four forms. Strict members keep them apart: `[1, 2]` is tokens, not strings.
Prompt = Annotated[
    StrictStr
    | list[StrictStr]
    | Annotated[list[StrictInt], Field(min_length=1)]
    | Annotated[list[Annotated[list[StrictInt], Field(min_length=1)]], Field(min_length=1)],
    one_of("a string, an array of strings, an array of integer tokens, "
           "or an array of arrays of integer tokens"),
]


class CreateCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    prompt: Prompt | None = "<|endoftext|>"
    suffix: StrictStr | None = None
    max_tokens: Annotated[int, Field(strict=True, ge=0)] | None = 16
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: Choices | None = None
    best_of: Annotated[int, Field(strict=True, ge=0, le=20)] | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    logprobs: Annotated[int, Field(strict=True, ge=0, le=5)] | None = None
    echo: StrictBool | None = None
    stop: Stop | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    seed: Seed | None = None
    user: StrictStr | None = None

    @property
    def prompts(self) -> list[str] | list[list[int]]:
        """The prompts as a list with one item per prompt, whichever form was sent."""
        prompt = "<|endoftext|>" if self.prompt is None else self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and isinstance(prompt[0], int):
            return [prompt]
        return prompt  # type: ignore[return-value]


class LegacyLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: LegacyLogprobs | None
    finish_reason: Literal["stop", "length", "content_filter"] | None


class TextCompletion(BaseModel):
    """A whole completion, and also each streamed chunk (the spec uses one schema for both)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = omitted_when_none()
