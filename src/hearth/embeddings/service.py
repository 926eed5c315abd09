"""Embeddings: from a validated request to vectors, tokens counted by the model's tokenizer.

All inputs of a request go to the engine in one call on the model's thread,
where they are sorted by length and run in padded batches; ``create_many``
joins several requests (a batch's lines) into that one call. Token-array inputs
are OpenAI's cl100k_base ids (what tiktoken gives LangChain and other
clients): they are decoded to text, which the model then reads as its own.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.embeddings.protocol import (
    CreateEmbeddingRequest,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingUsage,
)
from hearth.engines.embeddings import EmbeddingEngine, InputTooLong, InvalidTokens, reduce_dimensions
from hearth.engines.openai_tokens import UnknownTokens
from hearth.errors import APIError, InvalidRequest
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
    for index, item in enumerate(inputs):
        if len(item) > engine.max_tokens:
            raise InputTooLong(index, len(item), engine.max_tokens)
    return [engine.openai_tokens.decode(index, item)  # type: ignore[arg-type]
            for index, item in enumerate(inputs)]


def _tokens(engine: EmbeddingEngine, inputs: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
    """Runs on the model's thread: each input's validated token ids."""
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
    return token_ids


@dataclass(frozen=True)
class _Embedded:
    vectors: np.ndarray
    n_tokens: int


def _embed(engine: EmbeddingEngine, bodies: Sequence[CreateEmbeddingRequest]) -> list[_Embedded | APIError]:
    """Runs on the model's thread: every request's inputs in one engine call.

    A request refused while tokenizing (an input too long, unknown tokens)
    gets its error; the others are answered. Validated ids go to the engine,
    so nothing is tokenized twice.
    """
    tokenized: list[list[list[int]] | APIError] = []
    for body in bodies:
        try:
            tokenized.append(_tokens(engine, body.inputs))
        except APIError as exc:
            tokenized.append(exc)
    joined = [ids for item in tokenized if not isinstance(item, APIError) for ids in item]
    vectors = engine.embed(joined) if joined else None
    outcomes: list[_Embedded | APIError] = []
    start = 0
    for body, item in zip(bodies, tokenized, strict=True):
        if isinstance(item, APIError):
            outcomes.append(item)
            continue
        assert vectors is not None
        end = start + len(item)
        outcomes.append(_Embedded(reduce_dimensions(vectors[start:end], body.dimensions),
                                  sum(len(ids) for ids in item)))
        start = end
    return outcomes


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
        (outcome,) = await self.create_many(caller, [body], background=background)
        if isinstance(outcome, APIError):
            raise outcome
        return outcome

    async def create_many(self, caller: Caller, bodies: Sequence[CreateEmbeddingRequest], *,
                          background: bool = False) -> list[CreateEmbeddingResponse | APIError]:
        """Several requests answered together, each model's share in one engine call (a batch's
        lines, joined); a request that is refused gets its error in its place."""
        outcomes: list[CreateEmbeddingResponse | APIError | None] = [None] * len(bodies)
        by_model: dict[str, list[int]] = {}
        for index, body in enumerate(bodies):
            by_model.setdefault(body.model, []).append(index)
        for name, indexes in by_model.items():
            try:
                model = await self.models.load(name, "embedding")
            except APIError as exc:
                for index in indexes:
                    outcomes[index] = exc
                continue
            checked = []
            for index in indexes:
                try:
                    _check_inputs(bodies[index].inputs)
                    _check_dimensions(model.engine, bodies[index])
                except APIError as exc:
                    outcomes[index] = exc
                else:
                    checked.append(index)
            if not checked:
                continue
            with await self.models.admit(model, background=background) as admission:
                embedded = await model.runner.run(_embed, model.engine, [bodies[i] for i in checked],
                                                  admission=admission)
            for index, result in zip(checked, embedded, strict=True):
                outcomes[index] = (result if isinstance(result, APIError)
                                   else self._answer(caller, bodies[index], result, background))
        return [outcome for outcome in outcomes if outcome is not None]

    def _answer(self, caller: Caller, body: CreateEmbeddingRequest, embedded: _Embedded,
                background: bool) -> CreateEmbeddingResponse:
        self.meter.record(UsageEvent(caller, kind="embeddings", endpoint="/v1/embeddings",
                                     model=body.model, batch=background, input_tokens=embedded.n_tokens))
        # Built without re-validation: the values come straight from the engine.
        data = [Embedding.model_construct(object="embedding", index=index, embedding=embedding)
                for index, embedding in enumerate(_encoded(embedded.vectors, body.encoding_format))]
        usage = EmbeddingUsage(prompt_tokens=embedded.n_tokens, total_tokens=embedded.n_tokens)
        return CreateEmbeddingResponse.model_construct(object="list", data=data, model=body.model,
                                                       usage=usage)
