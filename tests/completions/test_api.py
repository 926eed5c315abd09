"""POST /v1/completions (legacy) through the official SDK, answered by the local Qwen model."""

from __future__ import annotations

import httpx
import pytest
from openai import OpenAI

from tests.chat.test_api import sse_payloads
from tests.http.test_foundation import assert_envelope
from tests.spec import assert_matches_schema

MODEL = "gpt-3.5-turbo-instruct"
PROMPT = "The capital of France is"


def test_completion_matches_the_spec(client: OpenAI, http: httpx.Client) -> None:
    params = {"model": MODEL, "prompt": PROMPT, "max_tokens": 3, "temperature": 0}

    completion = client.completions.create(**params)
    raw = http.post("/v1/completions", json=params)

    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    assert "Paris" in completion.choices[0].text
    assert completion.system_fingerprint.startswith("fp_")
    assert completion.usage.prompt_tokens == 5 and completion.usage.completion_tokens == 3
    assert raw.status_code == 200
    assert_matches_schema(raw.json(), "CreateCompletionResponse")


def test_every_prompt_form_and_its_usage(client: OpenAI) -> None:
    tokens = [785, 6722, 315, 9625, 374]  # "The capital of France is" in Qwen's vocabulary

    forms = {
        "strings": ["One two three", "Red green"],
        "tokens": tokens,
        "token arrays": [tokens, tokens[:2]],
    }
    results = {name: client.completions.create(model=MODEL, prompt=prompt, max_tokens=2,
                                               temperature=0, echo=True)
               for name, prompt in forms.items()}

    assert [c.text.startswith(p) for c, p in zip(results["strings"].choices, forms["strings"])] \
        == [True, True]
    assert results["tokens"].choices[0].text.startswith(PROMPT)
    assert results["tokens"].usage.prompt_tokens == 5
    assert len(results["token arrays"].choices) == 2
    assert results["token arrays"].usage.prompt_tokens == 7
    assert results["token arrays"].usage.completion_tokens == 4


def test_echo_and_logprobs(client: OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=3, temperature=0,
                                           echo=True, logprobs=2)

    choice = completion.choices[0]
    assert choice.text.startswith(PROMPT + " Paris")
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.text_offset) == 3
    assert logprobs.text_offset[0] == len(PROMPT)
    assert all(len(top) == 2 for top in logprobs.top_logprobs)


def test_suffix_fills_the_middle(client: OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt="def add(a, b):\n",
                                           suffix="\n\nprint(add(1, 2))\n", max_tokens=8,
                                           temperature=0)

    assert "return a + b" in completion.choices[0].text


def test_best_of_and_n(client: OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt="Hello", max_tokens=3, n=2,
                                           best_of=3, seed=5)

    assert [choice.index for choice in completion.choices] == [0, 1]


def test_stop_and_max_tokens(client: OpenAI) -> None:
    stopped = client.completions.create(model=MODEL, prompt="1, 2, 3,", stop=[" 6"],
                                        max_tokens=20, temperature=0)
    cut = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=3)

    assert stopped.choices[0].finish_reason == "stop" and "6" not in stopped.choices[0].text
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3


def test_max_tokens_zero_echoes_the_prompt(client: OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=0, echo=True)

    assert completion.choices[0].text == PROMPT
    assert completion.usage.completion_tokens == 0


def test_stream_equals_the_unstreamed_answer(client: OpenAI, http: httpx.Client) -> None:
    params = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "seed": 11,
              "temperature": 0.9}

    whole = client.completions.create(**params).choices[0].text
    chunks = sse_payloads(http.post("/v1/completions", json={
        **params, "stream": True, "stream_options": {"include_usage": True}}))

    assert "".join(c["text"] for chunk in chunks for c in chunk["choices"]) == whole
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8


def test_streams_of_several_prompts_count_every_prompt(http: httpx.Client) -> None:
    chunks = sse_payloads(http.post("/v1/completions", json={
        "model": MODEL, "prompt": ["One two", "Red green"], "max_tokens": 2, "stream": True,
        "stream_options": {"include_usage": True}}))

    assert {c["index"] for chunk in chunks for c in chunk["choices"]} == {0, 1}
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-1]["usage"]["prompt_tokens"] == 4


@pytest.mark.parametrize(("body", "param"), [
    ({"model": MODEL, "prompt": 42}, "prompt"),
    ({"model": MODEL, "prompt": [[]]}, "prompt"),
    ({"model": MODEL, "prompt": "x", "logprobs": 6}, "logprobs"),
    ({"model": MODEL, "prompt": "x", "temperature": -1}, "temperature"),
    ({"model": MODEL, "prompt": "x", "n": 2, "best_of": 1}, "best_of"),
    ({"model": MODEL, "prompt": "x", "best_of": 2, "stream": True}, "best_of"),
    ({"model": MODEL, "prompt": "x", "best_of": 8}, "best_of"),
    ({"model": MODEL, "prompt": "x", "echo": "yes"}, "echo"),
    ({"model": MODEL, "prompt": "x", "messages": []}, "messages"),
])
def test_bad_requests_are_400_naming_the_param(http: httpx.Client, body: dict, param: str) -> None:
    assert_envelope(http.post("/v1/completions", json=body), 400, param=param)


def test_unknown_model_and_context_overflow(http: httpx.Client) -> None:
    assert_envelope(http.post("/v1/completions", json={"model": "text-nope", "prompt": "x"}),
                    404, param="model", code="model_not_found")
    too_long = {"model": MODEL, "prompt": "hello " * 9000, "max_tokens": 2}
    assert_envelope(http.post("/v1/completions", json=too_long), 400, param="prompt",
                    code="context_length_exceeded")
