"""EmbeddingsService over the fake MiniLM: input forms, encodings, dimensions, metering, refusals."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import pytest

from hearth.embeddings.protocol import CreateEmbeddingRequest, CreateEmbeddingResponse
from hearth.embeddings.service import EmbeddingsService
from hearth.errors import APIError, InvalidRequest, NotFound
from tests.services.conftest import CALLER, Hearth

MODEL = "text-embedding-3-small"


def request(**fields: Any) -> CreateEmbeddingRequest:
    return CreateEmbeddingRequest.model_validate({"model": MODEL, "input": ["red fox", "a lazy brown dog"], **fields})


def embed(hearth: Hearth, body: CreateEmbeddingRequest, *, background: bool = False) -> CreateEmbeddingResponse:
    return asyncio.run(EmbeddingsService(hearth.models, hearth.meter).create(CALLER, body, background=background))


def test_create_returns_a_unit_vector_per_input_metered_by_its_tokens(hearth: Hearth) -> None:
    """One normalized vector per input, in order; usage and the one event count every input's tokens."""
    response = embed(hearth, request())

    wire = CreateEmbeddingResponse.model_validate(response.model_dump(mode="json"))
    assert (wire.object, wire.model) == ("list", MODEL)
    assert [(item.object, item.index) for item in wire.data] == [("embedding", 0), ("embedding", 1)]
    vectors = np.array([item.embedding for item in wire.data])
    assert vectors.shape == (2, 8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert (wire.usage.prompt_tokens, wire.usage.total_tokens) == (6, 6)
    event = hearth.only_event()
    assert (event.kind, event.endpoint, event.model) == ("embeddings", "/v1/embeddings", MODEL)
    assert event.input_tokens == wire.usage.prompt_tokens
    assert hearth.runner(MODEL).admitted == 0


def test_background_embeddings_are_metered_as_batch(hearth: Hearth) -> None:
    """Embeddings made for a job are recorded with batch=True."""
    embed(hearth, request(), background=True)

    assert hearth.only_event(batch=True).input_tokens == 6


def test_base64_holds_the_same_little_endian_floats(hearth: Hearth) -> None:
    """encoding_format=base64 gives each vector as base64 of its float32 little-endian bytes."""
    floats = embed(hearth, request())
    encoded = embed(hearth, request(encoding_format="base64"))

    for plain, packed in zip(floats.data, encoded.data, strict=True):
        assert isinstance(packed.embedding, str)
        assert np.allclose(np.frombuffer(base64.b64decode(packed.embedding), dtype="<f4"), plain.embedding)


def test_dimensions_shortens_the_vectors(hearth: Hearth) -> None:
    """dimensions reaches the engine: shorter vectors, still of unit length."""
    response = embed(hearth, request(dimensions=3))

    vectors = np.array([item.embedding for item in response.data])
    assert vectors.shape == (2, 3) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_token_arrays_are_read_as_openai_tokens(hearth: Hearth) -> None:
    """Token-id inputs are decoded from OpenAI's vocabulary and counted by the model's own tokenizer."""
    response = embed(hearth, request(input=[5, 17, 42]))

    # The fake decodes them to "t5 t17 t42": three words of the model's own.
    assert len(response.data) == 1 and response.usage.prompt_tokens == 3


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"input": []}, "input", None),
    ({"input": ["fine", ""]}, "input", None),
    ({"input": [[1], []]}, "input", None),
    ({"dimensions": 9}, "dimensions", None),
    ({"input": " ".join(["word"] * 17)}, "input", "context_length_exceeded"),
    ({"input": [1, 2, 100]}, "input", None),
])
def test_refusals_name_their_field_and_meter_nothing(hearth: Hearth, fields: dict[str, Any], param: str,
                                                     code: str | None) -> None:
    """Empty inputs, too many dimensions, an over-long input and unknown token ids are 400s on their field."""
    with pytest.raises(InvalidRequest) as refused:
        embed(hearth, request(**fields))

    assert (refused.value.param, refused.value.code) == (param, code)
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


def test_token_arrays_need_a_model_that_reads_openai_tokens(hearth: Hearth) -> None:
    """A model without OpenAI's vocabulary takes text only."""
    hearth.engine(MODEL).openai_tokens = None

    with pytest.raises(InvalidRequest) as refused:
        embed(hearth, request(input=[[1, 2], [3]]))

    assert refused.value.param == "input"


@pytest.mark.parametrize(("model", "error", "code"), [
    ("text-embedding-ada-002", NotFound, "model_not_found"),
    ("gpt-4o-mini", InvalidRequest, "model_not_supported"),
])
def test_a_model_that_cannot_embed_is_refused(hearth: Hearth, model: str, error: type[APIError], code: str) -> None:
    """An unknown model is model_not_found; a chat model is model_not_supported."""
    with pytest.raises(error) as refused:
        embed(hearth, request(model=model))

    assert (refused.value.param, refused.value.code) == ("model", code)


def test_create_many_answers_each_request_as_create_would_in_one_engine_call(
        hearth: Hearth, monkeypatch: pytest.MonkeyPatch) -> None:
    """Joined requests (a batch's lines): one engine call for all their inputs; each request gets
    the vectors, usage and event it would have had alone, and a refused one only its own error."""
    bodies = [request(), request(input="red fox", dimensions=3), request(input=" ".join(["word"] * 17)),
              request(input=[], encoding_format="base64"), request(model="text-embedding-ada-002")]
    alone = [embed(hearth, bodies[0]), embed(hearth, bodies[1])]
    hearth.meter.events.clear()
    engine = hearth.engine(MODEL)
    calls: list[int] = []
    real_embed = engine.embed
    monkeypatch.setattr(engine, "embed", lambda inputs, **kw: calls.append(len(inputs)) or real_embed(inputs, **kw))

    outcomes = asyncio.run(EmbeddingsService(hearth.models, hearth.meter).create_many(CALLER, bodies))

    assert calls == [3]
    for joined, single in zip(outcomes[:2], alone, strict=True):
        assert isinstance(joined, CreateEmbeddingResponse)
        assert joined.model_dump() == single.model_dump()
    assert [(type(o).__name__, getattr(o, "code", None)) for o in outcomes[2:]] == [
        ("InvalidRequest", "context_length_exceeded"), ("InvalidRequest", None), ("NotFound", "model_not_found")]
    assert [event.input_tokens for event in hearth.meter.events] == [6, 2]
    assert hearth.runner(MODEL).admitted == 0
