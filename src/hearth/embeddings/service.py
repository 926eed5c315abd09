"""Embeddings: from a validated request to vectors, tokens counted by the model's tokenizer.

All inputs of a request go to the engine in one call on the model's thread,
where they are sorted by length and run in padded batches. Token-array inputs
are OpenAI's cl100k_base ids (what tiktoken gives LangChain and other
clients): they are decoded to text, which the model then reads as its own.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.embeddings.protocol import (
    CreateEmbeddingRequest,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingUsage,
)
from hearth.engines.embeddings import EmbeddingEngine, InputTooLong, InvalidTokens
from hearth.engines.openai_tokens import UnknownTokens
from hearth.errors import InvalidRequest
from hearth.models.service import ModelService

# The API's limits: inputs per request, and tokens summed over a request's inputs.
MAX_INPUTS = 2048
MAX_REQUEST_TOKENS = 300_000


def _check_inputs(inputs: Sequence[str] | Sequence[Sequence[int]]) -> None:
    if not inputs:
        raise InvalidRequest("'input' must not be an empty array.", param="input")
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' holds {len(inputs)} items; at most {MAX_INPUTS} inputs are allowed "
            "per request.", param="input")
    for index, item in enumerate(inputs):
        if not item:
            what = "an empty string" if isinstance(item, str) else "an empty token array"
            raise InvalidRequest(f"Input {index} is {what}; every input must hold text or tokens.",
                                 param="input")


def _check_dimensions(engine: EmbeddingEngine, body: CreateEmbeddingRequest) -> None:
    if body.dimensions is not None and body.dimensions > engine.dimensions:
        raise InvalidRequest(
            f"This model has {engine.dimensions} dimensions; `dimensions` must be between 1 and "
            f"{engine.dimensions} (got {body.dimensions}).", param="dimensions")


def _texts(engine: EmbeddingEngine, inputs: Sequence[str] | Sequence[Sequence[int]]
           ) -> Sequence[str]:
    if all(isinstance(item, str) for item in inputs):
        return inputs  # type: ignore[return-value]
    if engine.openai_tokens is None:
        raise InvalidRequest("This model reads text only; send 'input' as strings.",
                             param="input")
    return [engine.openai_tokens.decode(index, item)  # type: ignore[arg-type]
            for index, item in enumerate(inputs)]


def _embed(engine: EmbeddingEngine, inputs: Sequence[str] | Sequence[Sequence[int]],
           dimensions: int | None) -> tuple[np.ndarray, int]:
    """Runs on the model's thread: the vectors and the request's token count."""
    try:
        token_ids = engine.token_ids(_texts(engine, inputs))
    except InputTooLong as exc:
        raise InvalidRequest(f"{exc} Shorten or split it.", param="input",
                             code="context_length_exceeded") from None
    except (InvalidTokens, UnknownTokens) as exc:
        raise InvalidRequest(str(exc), param="input") from None
    n_tokens = sum(len(ids) for ids in token_ids)
    if n_tokens > MAX_REQUEST_TOKENS:
        raise InvalidRequest(
            f"The request holds {n_tokens} tokens; at most {MAX_REQUEST_TOKENS} tokens are "
            "allowed across all inputs of one request.", param="input")
    # Validated ids go back in, so nothing is tokenized twice.
    return engine.embed(token_ids, dimensions=dimensions), n_tokens


def _encoded(vectors: np.ndarray, encoding_format: str) -> list[list[float]] | list[str]:
    if encoding_format == "base64":
        # The SDKs decode base64 embeddings as little-endian float32.
        little_endian = vectors.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little_endian]
    return vectors.tolist()


class EmbeddingsService:
    """Embeddings for any caller."""

    def __init__(self, models: ModelService, meter: Meter) -> None:
        self.models = models
        self.meter = meter

    async def create(self, caller: Caller, body: CreateEmbeddingRequest, *,
                     background: bool = False) -> CreateEmbeddingResponse:
        model = await self.models.load(body.model, "embedding")
        inputs = body.inputs
        _check_inputs(inputs)
        _check_dimensions(model.engine, body)
        with await self.models.admit(model, background=background) as admission:
            vectors, n_tokens = await model.runner.run(_embed, model.engine, inputs,
                                                       body.dimensions, admission=admission)
        self.meter.record(UsageEvent(caller, kind="embeddings", endpoint="/v1/embeddings",
                                     model=body.model, batch=background, input_tokens=n_tokens))
        # Built without re-validation: the values come straight from the engine.
        data = [Embedding.model_construct(object="embedding", index=index, embedding=embedding)
                for index, embedding in enumerate(_encoded(vectors, body.encoding_format))]
        return CreateEmbeddingResponse.model_construct(
            object="list", data=data, model=body.model,
            usage=EmbeddingUsage(prompt_tokens=n_tokens, total_tokens=n_tokens))
