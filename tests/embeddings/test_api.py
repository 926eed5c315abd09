"""POST /v1/embeddings through the official SDK against the live server."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from tokenizers import Tokenizer

from tests.conftest import pulled_model_dir
from tests.http.test_foundation import assert_envelope
from tests.spec import assert_matches_schema

MODEL = "text-embedding-3-small"
DIMENSIONS = 384


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """The model's own WordPiece tokenizer: token-array inputs are ids in its vocabulary."""
    loaded = Tokenizer.from_file(str(pulled_model_dir("all-minilm-l6-v2") / "tokenizer.json"))
    # The shipped file pads and truncates to 128 tokens; ids here must be the text's own.
    loaded.no_padding()
    loaded.no_truncation()
    return loaded


def token_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def vectors(client: OpenAI, inputs, **kwargs) -> np.ndarray:
    response = client.embeddings.create(model=MODEL, input=inputs, **kwargs)
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def test_paraphrase_ranks_above_unrelated_sentence(client: OpenAI) -> None:
    anchor, paraphrase, unrelated = vectors(client, [
        "The cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Quarterly revenue rose by eight percent.",
    ])
    assert anchor @ paraphrase > anchor @ unrelated + 0.3


def test_vectors_are_unit_length_and_in_input_order(client: OpenAI) -> None:
    texts = ["first text", "a second, longer text about something else entirely", "third"]
    response = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [item.index for item in response.data] == [0, 1, 2]
    together = np.array([item.embedding for item in response.data])
    assert together.shape == (3, DIMENSIONS)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, together):
        assert np.allclose(vectors(client, text, encoding_format="float")[0], row, atol=1e-5)


def test_float_and_base64_give_the_same_vectors(client: OpenAI, http: httpx.Client) -> None:
    texts = ["Embeddings travel as floats or as base64.", "Both must decode alike."]
    as_float = vectors(client, texts, encoding_format="float")
    # The SDK asks for base64 by default and decodes it itself.
    assert np.allclose(vectors(client, texts), as_float, atol=1e-6)
    body = http.post("/v1/embeddings", json={"model": MODEL, "input": texts,
                                              "encoding_format": "base64"}).json()
    raw = np.array([np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
                    for item in body["data"]])
    assert np.allclose(raw, as_float, atol=1e-6)


def test_dimensions_truncate_and_renormalize(client: OpenAI) -> None:
    text = "Shorter vectors keep the leading components."
    full = vectors(client, text, encoding_format="float")[0]
    for size in (1, 64, 256, DIMENSIONS):
        short = vectors(client, text, dimensions=size, encoding_format="float")[0]
        assert short.shape == (size,)
        assert np.isclose(np.linalg.norm(short), 1.0, atol=1e-5)
        assert np.allclose(short, full[:size] / np.linalg.norm(full[:size]), atol=1e-5)
    assert vectors(client, text, dimensions=128).shape == (1, 128)


# cl100k_base ids, as tiktoken (and so LangChain's OpenAIEmbeddings) produces them.
CL100K = {
    "Hello world, the quick brown fox.": [9906, 1917, 11, 279, 4062, 14198, 39935, 13],
    "Token arrays are what LangChain sends.": [3404, 18893, 527, 1148, 23272, 19368, 22014, 13],
    # One character split across ids must come back whole.
    "Ünïcödé splits inside a character: 日本語": [53591, 77, 38672, 66, 3029, 67, 978, 41567, 4871,
                                                  264, 3752, 25, 76502, 22656, 45918, 252],
}


def test_token_arrays_are_openai_token_ids(client: OpenAI, tokenizer: Tokenizer) -> None:
    texts, ids = list(CL100K), list(CL100K.values())
    from_text = vectors(client, texts, encoding_format="float")
    one = client.embeddings.create(model=MODEL, input=ids[0], encoding_format="float")
    assert len(one.data) == 1
    # Usage counts the tokens the model read: its own, for the decoded text.
    assert one.usage.prompt_tokens == len(token_ids(tokenizer, texts[0]))
    assert np.allclose(one.data[0].embedding, from_text[0], atol=1e-5)
    assert np.allclose(vectors(client, ids, encoding_format="float"), from_text, atol=1e-5)


def test_ids_outside_cl100k_are_400s(http: httpx.Client) -> None:
    for bad in ([9906, 100_256], [[9906], [-1]]):
        error = assert_envelope(http.post("/v1/embeddings", json={"model": MODEL, "input": bad}),
                                400, param="input")
        assert "cl100k_base" in error["message"]


def test_usage_counts_the_model_tokens(client: OpenAI, tokenizer: Tokenizer) -> None:
    texts = ["one", "two words", "Counting tokens with the model's own tokenizer, punctuation too!"]
    response = client.embeddings.create(model=MODEL, input=texts, user="user-1234")
    expected = sum(len(token_ids(tokenizer, text)) for text in texts)
    assert response.usage.prompt_tokens == expected
    assert response.usage.total_tokens == expected


def test_2048_inputs_are_accepted_and_2049_refused(client: OpenAI, http: httpx.Client) -> None:
    texts = [f"input number {i}" for i in range(2049)]
    response = client.embeddings.create(model=MODEL, input=texts[:2048])
    assert len(response.data) == 2048
    assert [item.index for item in response.data] == list(range(2048))
    assert_envelope(http.post("/v1/embeddings", json={"model": MODEL, "input": texts}), 400,
                    param="input")


def test_response_matches_the_spec_and_echoes_the_model(client: OpenAI,
                                                        http: httpx.Client) -> None:
    for name in ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
                 "all-minilm-l6-v2"):
        response = http.post("/v1/embeddings", json={"model": name, "input": ["a", "b"]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert_matches_schema(body, "CreateEmbeddingResponse")
        assert body["object"] == "list"
        assert body["model"] == name
        assert all(item["object"] == "embedding" for item in body["data"])


def test_inputs_up_to_openais_limit_are_embedded_past_the_models_window(client: OpenAI) -> None:
    """A document far longer than MiniLM's 254 tokens (as LangChain's 8191-token chunks are) gets
    one unit vector, as text and as cl100k_base token ids alike."""
    document = " ".join(f"Paragraph {i} of a long report on river ecology and fish." for i in range(500))
    as_text = client.embeddings.create(model=MODEL, input=document)
    as_tokens = client.embeddings.create(model=MODEL, input=[[9906, 1917] * 4095])  # "Hello world", 8190 ids

    vector = np.array(as_text.data[0].embedding)
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    assert as_text.usage.prompt_tokens > 254 * 10
    assert len(as_tokens.data[0].embedding) == 384


def test_input_over_openais_limit_names_its_index(http: httpx.Client) -> None:
    for over in (" ".join(["word"] * 8193), [15339] * 8193):
        response = http.post("/v1/embeddings", json={"model": MODEL, "input": ["short", over]}
                             if isinstance(over, str) else {"model": MODEL, "input": [[15339], over]})
        error = assert_envelope(response, 400, param="input", code="context_length_exceeded")
        assert "Input 1 has 8193 tokens" in error["message"] and "8192" in error["message"]


@pytest.mark.parametrize("body, param", [
    ({"model": MODEL, "input": ""}, "input"),
    ({"model": MODEL, "input": []}, "input"),
    ({"model": MODEL, "input": ["fine", ""]}, "input"),
    ({"model": MODEL, "input": [[101, 102], []]}, "input"),
    ({"model": MODEL, "input": [1, 99_999_999]}, "input"),
    ({"model": MODEL, "input": [-1]}, "input"),
    ({"model": MODEL, "input": 5}, "input"),
    ({"model": MODEL, "input": [[1, 2], "mixed"]}, "input"),
    ({"model": MODEL, "input": [1.5, 2]}, "input"),
    ({"model": MODEL, "input": {"text": "x"}}, "input"),
    ({"model": MODEL}, "input"),
    ({"input": "x"}, "model"),
    ({"model": MODEL, "input": "x", "dimensions": 385}, "dimensions"),
    ({"model": MODEL, "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": MODEL, "input": "x", "dimensions": "64"}, "dimensions"),
    ({"model": MODEL, "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"model": MODEL, "input": "x", "temperature": 1}, "temperature"),
])
def test_invalid_requests_are_400_envelopes(http: httpx.Client, body: dict, param: str) -> None:
    assert_envelope(http.post("/v1/embeddings", json=body), 400, param=param)


def test_model_errors(client: OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(model="no-such-embedder", input="x")
    assert missing.value.code == "model_not_found"
    assert_envelope(http.post("/v1/embeddings", json={"model": "no-such-embedder", "input": "x"}),
                    404, param="model", code="model_not_found")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="tts-1", input="x")
    assert_envelope(http.post("/v1/embeddings", json={"model": "tts-1", "input": "x"}), 400,
                    param="model", code="model_not_supported")


def test_malformed_bodies(http: httpx.Client) -> None:
    json_header = {"content-type": "application/json"}
    assert_envelope(http.post("/v1/embeddings", content=b'{"model": "x", ', headers=json_header),
                    400)
    assert_envelope(http.post("/v1/embeddings", content=b'["not", "an object"]',
                              headers=json_header), 400)
    assert_envelope(http.post("/v1/embeddings", content=b"model=x&input=y",
                              headers={"content-type": "application/x-www-form-urlencoded"}),
                    415, code="unsupported_media_type")
