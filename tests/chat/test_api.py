"""POST /v1/chat/completions through the official SDK, answered by the local Qwen model.

Generations are kept to a few tokens so the module runs quickly on two cores.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import pytest
from openai import OpenAI

from tests.conftest import LiveServer
from tests.http.test_foundation import assert_envelope
from tests.ops.test_ops import metric
from tests.spec import assert_matches_schema

MODEL = "gpt-4o-mini"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def sse_payloads(response: httpx.Response) -> list[dict]:
    """The JSON events of an SSE body, checking it ends with [DONE]."""
    data = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


# -- answers ------------------------------------------------------------------


def test_plain_chat_answers_and_matches_the_spec(http: httpx.Client, client: OpenAI) -> None:
    question = user("What is the capital of France? Answer in one word.")

    completion = client.chat.completions.create(model=MODEL, messages=question, max_tokens=8,
                                                temperature=0)
    raw = http.post("/v1/chat/completions",
                    json={"model": MODEL, "messages": question, "max_tokens": 8, "temperature": 0})

    assert "paris" in completion.choices[0].message.content.lower()
    assert completion.object == "chat.completion" and completion.model == MODEL
    assert completion.choices[0].finish_reason == "stop"
    assert completion.system_fingerprint.startswith("fp_")
    usage = completion.usage
    assert usage.prompt_tokens > 10 and usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw.status_code == 200
    assert_matches_schema(raw.json(), "CreateChatCompletionResponse")


def test_every_role_and_a_tool_round_trip(client: OpenAI) -> None:
    messages: list[dict] = [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "developer", "content": [{"type": "text", "text": "Use the tools you are given."}]},
        {"role": "user", "content": [{"type": "text", "text": "What's the weather in Paris?"}]},
    ]

    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], max_tokens=64, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"])

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 31, "sky": "sunny"}'},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL],
                                            tool_choice="none", max_tokens=40, temperature=0)

    assert answer.choices[0].message.tool_calls is None
    assert "31" in answer.choices[0].message.content


def test_auto_tool_choice_yields_a_call_and_the_answer_uses_its_result(client: OpenAI) -> None:
    """What every agent framework does: tools offered with tool_choice "auto" (or left
    unset); the small default model's call comes back as a call, whole or streamed,
    and after the result it answers with the result instead of calling again."""
    question = user("What's the weather in Paris?")
    whole = client.chat.completions.create(model=MODEL, messages=question, tools=[WEATHER_TOOL],
                                           tool_choice="auto", max_tokens=64, temperature=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=question, stream=True,
                                                 tools=[WEATHER_TOOL], max_tokens=64, temperature=0))

    choice = whole.choices[0]
    assert choice.finish_reason == "tool_calls", choice.message.content
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    streamed = [c.choices[0] for c in chunks if c.choices]
    assert streamed[-1].finish_reason == "tool_calls"
    streamed_call = next(d.delta.tool_calls[0] for d in streamed if d.delta.tool_calls)
    assert streamed_call.function.name == "get_weather" and streamed_call.id.startswith("call_")

    answered = [*question, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 17, "sky": "light rain"}'}]
    answer = client.chat.completions.create(model=MODEL, messages=answered, tools=[WEATHER_TOOL],
                                            max_tokens=48, temperature=0)
    streamed_answer = "".join(
        c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model=MODEL, messages=answered, tools=[WEATHER_TOOL], max_tokens=48, temperature=0,
            stream=True) if c.choices)

    # Words from the result (neither is in the question), not the call again.
    for text in (answer.choices[0].message.content, streamed_answer):
        assert "17" in text or "rain" in text.lower(), text
        assert "{" not in text and "get_weather" not in text
    assert answer.choices[0].message.tool_calls is None
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_required_tool_choice_and_legacy_functions(client: OpenAI) -> None:
    required = client.chat.completions.create(
        model=MODEL, messages=user("Weather in Rome?"), tools=[WEATHER_TOOL],
        tool_choice="required", max_tokens=32)
    legacy = client.chat.completions.create(
        model=MODEL, messages=user("Weather in Rome?"), functions=[WEATHER_TOOL["function"]],
        function_call={"name": "get_weather"}, max_tokens=32)

    assert required.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert legacy.choices[0].finish_reason == "function_call"
    assert json.loads(legacy.choices[0].message.function_call.arguments)["city"]


def test_recursive_json_schema_is_accepted_and_followed(client: OpenAI) -> None:
    """A tree whose children are trees refers to its own root ("$ref": "#"), as
    structured outputs allow; the answer is a tree of that shape."""
    tree = {"type": "object", "additionalProperties": False, "required": ["name", "children"],
            "properties": {"name": {"type": "string", "maxLength": 12},
                           "children": {"type": "array", "maxItems": 2, "items": {"$ref": "#"}}}}
    completion = client.chat.completions.create(
        model=MODEL, messages=user("A tiny family tree, two generations."), temperature=0,
        max_tokens=200, response_format={"type": "json_schema",
                                         "json_schema": {"name": "tree", "schema": tree}})
    choice = completion.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    resolver_free = json.loads(json.dumps(tree).replace('"$ref": "#"', '"type": "object"'))
    jsonschema.validate(json.loads(choice.message.content), resolver_free)


def test_forced_tool_call_with_defs_and_refs(client: OpenAI) -> None:
    """Pydantic models with enums or nested models make $defs/$ref parameters (instructor,
    pydantic-ai, the Agents SDK); a forced call resolves them and keeps to the enum."""
    tool = {"type": "function", "function": {"name": "make_user", "parameters": {
        "$defs": {"Role": {"enum": ["admin", "guest"], "type": "string"}},
        "type": "object", "properties": {"role": {"$ref": "#/$defs/Role"}}, "required": ["role"]}}}
    completion = client.chat.completions.create(
        model=MODEL, messages=user("Make a guest user."), tools=[tool], tool_choice="required",
        max_tokens=32, temperature=0)
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "make_user"
    assert json.loads(call.function.arguments)["role"] in {"admin", "guest"}


def test_a_forced_call_cut_off_by_max_tokens_is_a_truncated_call(client: OpenAI) -> None:
    """As OpenAI does: finish_reason length and the call so far, never the wrapper JSON."""
    kwargs = {"model": MODEL, "messages": user("Weather in Rome?"), "tools": [WEATHER_TOOL],
              "tool_choice": "required", "max_tokens": 8}
    whole = client.chat.completions.create(**kwargs)
    choice = whole.choices[0]
    assert choice.finish_reason == "length" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and '"name"' not in call.function.arguments
    chunks = list(client.chat.completions.create(**kwargs, stream=True))
    streamed = [tc for chunk in chunks for c in chunk.choices for tc in c.delta.tool_calls or []]
    assert streamed and streamed[0].function.name == "get_weather"
    assert all(c.delta.content is None for chunk in chunks for c in chunk.choices)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_json_schema_output_validates_20_of_20(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 8},
                       "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "person", "strict": True, "schema": schema}}

    def one(seed: int) -> str:
        completion = client.chat.completions.create(
            model=MODEL, messages=user("Invent a person."), response_format=response_format,
            seed=seed, temperature=1.0, max_tokens=32)
        return completion.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(one, range(20)))

    for output in outputs:
        jsonschema.validate(json.loads(output), schema)


def test_json_object_output_parses(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user("Give me a color and its hex code as JSON."),
        response_format={"type": "json_object"}, max_tokens=32)

    assert isinstance(json.loads(completion.choices[0].message.content), dict)


def test_same_seed_gives_the_same_answer(client: OpenAI) -> None:
    def ask() -> str:
        return client.chat.completions.create(
            model=MODEL, messages=user("Invent a name for a cat."), seed=42, temperature=1.0,
            max_tokens=10).choices[0].message.content

    assert ask() == ask()


def test_stream_equals_the_unstreamed_answer(client: OpenAI, http: httpx.Client) -> None:
    params = {"model": MODEL, "messages": user("Describe the sea in one sentence."), "seed": 7,
              "temperature": 0.8, "max_tokens": 16}

    whole = client.chat.completions.create(**params).choices[0].message.content
    response = http.post("/v1/chat/completions",
                         json={**params, "stream": True, "stream_options": {"include_usage": True}})

    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = sse_payloads(response)
    for chunk in chunks:
        assert_matches_schema(chunk, "CreateChatCompletionStreamResponse")
    streamed = "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])
    assert streamed == whole
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    *_, finish, usage_chunk = chunks
    assert finish["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 16


def test_stream_without_include_usage_has_no_usage(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=user("Hi"), max_tokens=3,
                                                 stream=True))

    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason is not None


def test_several_choices_count_every_token(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user("Write a long poem about the sea."), n=2, max_tokens=5,
        temperature=1.0, seed=1)

    assert [choice.index for choice in completion.choices] == [0, 1]
    assert [choice.finish_reason for choice in completion.choices] == ["length", "length"]
    assert completion.usage.completion_tokens == 10  # both choices, not one


def test_several_choices_count_like_one_and_like_a_stream(client: OpenAI) -> None:
    """Choices that end by themselves count their end token, as a stream's usage does."""
    request = {"model": MODEL, "messages": user("Reply with the single word: yes"),
               "max_tokens": 10, "temperature": 0}
    one = client.chat.completions.create(**request, n=1)
    two = client.chat.completions.create(**request, n=2)
    streamed = [chunk for chunk in client.chat.completions.create(
        **request, n=2, stream=True, stream_options={"include_usage": True}) if chunk.usage]

    assert [choice.finish_reason for choice in two.choices] == ["stop", "stop"]
    assert two.usage.completion_tokens == 2 * one.usage.completion_tokens
    assert two.usage.completion_tokens == streamed[-1].usage.completion_tokens


def test_stop_sequence_ends_the_answer(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user("Count from 1 to 10, separated by commas."), stop=["5"],
        max_tokens=40, temperature=0)

    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert "4" in choice.message.content and "5" not in choice.message.content


def test_max_tokens_ends_with_length(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user("Write a long story about a dragon."), max_completion_tokens=4)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4


def test_logprobs_shape(client: OpenAI) -> None:
    completion = client.chat.completions.create(model=MODEL, messages=user("Say hi."), max_tokens=3,
                                                logprobs=True, top_logprobs=2)

    entries = completion.choices[0].logprobs.content
    assert len(entries) == 3
    for entry in entries:
        assert entry.logprob <= 0 and entry.bytes
        assert len(entry.top_logprobs) == 2


def test_harmless_spec_fields_are_accepted(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user("Say hi."), max_tokens=2, store=False, metadata={"team": "a"},
        user="u-1", service_tier="auto", reasoning_effort="low", verbosity="low",
        prompt_cache_key="k", safety_identifier="s", parallel_tool_calls=True,
        prediction={"type": "content", "content": "Hi"}, modalities=["text"])

    assert completion.choices[0].message.content
    assert completion.service_tier == "default"


# -- concurrency and disconnects ------------------------------------------------------


def test_two_streams_progress_together(client: OpenAI) -> None:
    arrivals: dict[str, list[float]] = {"a": [], "b": []}

    def consume(name: str) -> None:
        for _ in client.chat.completions.create(model=MODEL, stream=True, max_tokens=16,
                                                messages=user(f"Tell story {name} about a fox.")):
            arrivals[name].append(time.monotonic())

    threads = [threading.Thread(target=consume, args=(name,)) for name in arrivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Each stream received chunks before the other one finished: they interleave.
    assert arrivals["a"][2] < arrivals["b"][-1]
    assert arrivals["b"][2] < arrivals["a"][-1]


def test_disconnected_streams_stop_generating(server: LiveServer, client: OpenAI) -> None:
    """Four long streams fill every slot, and their clients leave after a few chunks: each stops
    within a few tokens (as metered when it ends) instead of running on to its 4000, and the
    slots are free for the next request."""
    generated = {"name": "hearth_tokens_total", "model": MODEL, "kind": "completions", "direction": "output"}
    before = metric(server.base_url, **generated)
    body = {"model": MODEL, "messages": user("Write a very long story about a dragon."),
            "max_tokens": 4000, "stream": True}
    with httpx.Client(base_url=server.base_url, timeout=60,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as raw:
        for _ in range(4):
            with raw.stream("POST", "/v1/chat/completions", json=body) as response:
                for _, _line in zip(range(3), response.iter_lines()):
                    pass

    deadline = time.monotonic() + 120
    while metric(server.base_url, "hearth_model_requests_in_flight", lane="online") > 0:
        assert time.monotonic() < deadline, "the abandoned streams are still generating"
        time.sleep(0.2)
    assert metric(server.base_url, **generated) - before < 4 * 200
    completion = client.chat.completions.create(model=MODEL, messages=user("Say hi."), max_tokens=3)
    assert completion.choices[0].message.content


# -- errors ---------------------------------------------------------------------------

HELLO = user("Hello")


@pytest.mark.parametrize(("body", "param"), [
    ({"model": MODEL, "messages": [{"role": "bogus", "content": "x"}]}, "messages[0]"),
    ({"model": MODEL, "messages": "hello"}, "messages"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": HELLO, "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "messages": HELLO, "temperature": 2.5}, "temperature"),
    ({"model": MODEL, "messages": HELLO, "top_p": 1.5}, "top_p"),
    ({"model": MODEL, "messages": HELLO, "n": 9}, "n"),
    ({"model": MODEL, "messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": HELLO, "stream": "yes"}, "stream"),
    ({"model": MODEL, "messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": MODEL, "messages": HELLO, "logit_bias": {"hello": 5}}, "logit_bias"),
    # Past the vocabulary, and past the context (llama.cpp would read 2^32 + 5 as 5).
    ({"model": MODEL, "messages": HELLO, "logit_bias": {"151936": 5}}, "logit_bias"),
    ({"model": MODEL, "messages": HELLO, "max_tokens": 2**32 + 5}, "max_tokens"),
    ({"model": MODEL, "messages": HELLO, "top_logprobs": 2}, "top_logprobs"),
    # A tagged union's tag is not part of the field's name.
    ({"model": MODEL, "messages": HELLO,
      "tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]},
     "tools[0].function.parameters"),
    ({"model": MODEL, "max_tokens": 2, "messages": [
        *HELLO, {"role": "assistant", "content": None, "tool_calls": [{
            "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"}]}, "messages"),
    ({"model": MODEL, "messages": HELLO, "stream_options": {"include_usage": True}},
     "stream_options"),
    ({"model": MODEL, "messages": HELLO, "response_format": {"type": "yaml"}}, "response_format"),
    ({"model": MODEL, "messages": HELLO, "modalities": ["text", "audio"],
      "audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ({"model": MODEL, "messages": HELLO, "tools": [{"type": "custom", "custom": {"name": "x"}}]},
     "tools[0]"),
    ({"model": MODEL, "messages": HELLO, "tools": [WEATHER_TOOL],
      "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"model": MODEL, "messages": HELLO, "frobnicate": 1}, "frobnicate"),
    ({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "messages[0].content[0]"),
])
def test_bad_requests_are_400_naming_the_param(http: httpx.Client, body: dict, param: str) -> None:
    message = assert_envelope(http.post("/v1/chat/completions", json=body), 400, param=param)["message"]
    assert "json.exception" not in message  # llama.cpp's library internals stay inside


def test_unknown_model_is_404(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": "gpt-nope", "messages": HELLO})

    assert_envelope(response, 404, param="model", code="model_not_found")


def test_prompt_over_the_context_window_is_400(http: httpx.Client) -> None:
    body = {"model": MODEL, "messages": user("hello " * 9000), "max_tokens": 2}

    for stream in (False, True):
        response = http.post("/v1/chat/completions", json={**body, "stream": stream})
        assert_envelope(response, 400, param="messages", code="context_length_exceeded")


def test_malformed_json_is_400(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", content=b'{"model": "gpt-4o-mini", "messages": [',
                         headers={"content-type": "application/json"})

    assert "JSON" in assert_envelope(response, 400)["message"]
