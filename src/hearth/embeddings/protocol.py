"""Wire models for POST /v1/embeddings (CreateEmbeddingRequest, CreateEmbeddingResponse)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from hearth.wire import one_of

# The spec's four forms: a string, strings, one token array, token arrays.
# Strict members keep the forms apart: `[1, 2]` must not become the strings "1", "2".
EmbeddingInput = Annotated[
    StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]],
    one_of("a string, an array of strings, an array of integer tokens, "
           "or an array of arrays of integer tokens"),
]


class CreateEmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, strict=True)
    user: str | None = None

    @property
    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list with one item per embedding, whichever form was sent."""
        if isinstance(self.input, str):
            return [self.input]
        if self.input and isinstance(self.input[0], int):
            return [self.input]
        return self.input  # type: ignore[return-value]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # A list of floats, or base64 of the little-endian float32 bytes.
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
