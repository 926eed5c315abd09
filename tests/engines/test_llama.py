"""LlamaEngine against a real GGUF model, with short generations to stay fast on 2 cores."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from hearth.engines.llama import ContextLengthExceeded, InvalidRequest, LlamaEngine, Stopped
from tests.conftest import pulled_model_dir

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "What's the weather like in Paris today?"}]


@pytest.fixture(scope="session")
def engine() -> LlamaEngine:
    model_path = pulled_model_dir("qwen2.5-coder-0.5b") / "model.gguf"
    return LlamaEngine(model_path, n_ctx=1024, n_parallel=4, threads=2)


def ask(text: str, **params: object) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 16, **params}


def streamed_text(chunks: list[dict]) -> str:
    return "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])


# -- chat ---------------------------------------------------------------------


def test_chat_answers_with_usage(engine: LlamaEngine) -> None:
    response = engine.chat(ask("What is the capital of France? One word.", model="gpt-4o-mini", temperature=0))

    choice = response["choices"][0]
    assert "paris" in choice["message"]["content"].lower()
    assert choice["finish_reason"] == "stop"
    assert response["object"] == "chat.completion"
    assert response["model"] == "gpt-4o-mini"
    usage = response["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "timings" not in response


def test_max_tokens_ends_with_length(engine: LlamaEngine) -> None:
    # Greedy, so the answer cannot happen to end by itself within five tokens.
    response = engine.chat(ask("Count from one to fifty in words.", max_completion_tokens=5, temperature=0))

    assert response["choices"][0]["finish_reason"] == "length"
    assert response["usage"]["completion_tokens"] == 5


def test_same_seed_gives_same_output(engine: LlamaEngine) -> None:
    request = ask("Invent a name for a cat.", seed=42, temperature=1.0, max_tokens=12)

    assert engine.chat(request)["choices"][0]["message"] == engine.chat(request)["choices"][0]["message"]


def test_stream_concatenates_to_the_unstreamed_answer(engine: LlamaEngine) -> None:
    request = ask("Describe the sea in one sentence.", seed=7, temperature=0.8, max_tokens=20)

    whole = engine.chat(request)["choices"][0]["message"]["content"]
    chunks = list(engine.chat_stream({**request, "stream_options": {"include_usage": True}}))

    assert streamed_text(chunks) == whole
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_closing_a_stream_stops_generation(engine: LlamaEngine) -> None:
    """Judged by llama.cpp's count of tokens generated, not by a clock: a stream left to
    run would generate up to its 1000 tokens."""
    before = engine.tokens_generated()
    stream = engine.chat_stream(ask("Write a very long story about a dragon.", max_tokens=1000,
                                    ignore_eos=True))
    for _ in zip(range(3), stream):
        pass
    assert engine.active_requests() == 1

    stream.close()

    while engine.active_requests():
        time.sleep(0.05)
    assert engine.tokens_generated() - before < 100


def test_a_whole_answer_that_may_be_stopped_is_the_same_answer(engine: LlamaEngine) -> None:
    """Generated as a stream and put together, it matches llama.cpp's own whole answer."""
    for kind, request in [("chat", ask("Name two colours.", temperature=0, logprobs=True, top_logprobs=1)),
                          ("complete", {"prompt": "The sky is", "max_tokens": 8, "temperature": 0, "logprobs": 1})]:
        generate = getattr(engine, kind)
        whole, stoppable = generate(request), generate(request, stop=threading.Event())
        for answer in (whole, stoppable):
            for choice in answer["choices"]:
                # The tokens chosen must agree; llama.cpp lists top alternatives in varying order,
                # and its whole answer (not its stream) lists the end token, as "", among them.
                logprobs = choice.pop("logprobs")
                tokens = logprobs.get("tokens") or [e["token"] for e in logprobs["content"]]
                choice["tokens"] = [token for token in tokens if token]
            for key in ("id", "created", "model"):  # llama.cpp names the model by its path in streams
                answer.pop(key)
            answer["usage"].pop("prompt_tokens_details", None)
        assert stoppable == whole


def test_a_whole_answer_stops_when_its_caller_leaves(engine: LlamaEngine) -> None:
    """Judged by llama.cpp's own count of tokens generated, as for streams."""
    before = engine.tokens_generated()
    stop = threading.Event()

    def stop_once_generating() -> None:
        while not engine.active_requests():
            time.sleep(0.02)
        stop.set()

    threading.Thread(target=stop_once_generating, daemon=True).start()
    with pytest.raises(Stopped):
        engine.chat(ask("Write a very long story about a dragon.", max_tokens=1000, ignore_eos=True), stop=stop)

    while engine.active_requests():
        time.sleep(0.05)
    assert engine.tokens_generated() - before < 500


def test_concurrent_streams_progress_together(engine: LlamaEngine) -> None:
    arrivals: dict[str, list[float]] = {"a": [], "b": []}

    def consume(name: str) -> None:
        for _ in engine.chat_stream(ask(f"Tell story {name} about a fox.", max_tokens=24, temperature=0)):
            arrivals[name].append(time.monotonic())

    threads = [threading.Thread(target=consume, args=(name,)) for name in arrivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Each stream received chunks before the other one finished: they interleave.
    assert arrivals["a"][1] < arrivals["b"][-1]
    assert arrivals["b"][1] < arrivals["a"][-1]


def test_json_schema_output_always_validates(engine: LlamaEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": schema}}

    def one(seed: int) -> str:
        request = ask("Invent a person.", response_format=response_format, seed=seed, temperature=1.0, max_tokens=48)
        return engine.chat(request)["choices"][0]["message"]["content"]

    # A few seeds here; tests/test_chat.py holds the 20-of-20 check through the API.
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(one, range(4)))

    for output in outputs:
        jsonschema.validate(json.loads(output), schema)


def test_json_object_output_parses(engine: LlamaEngine) -> None:
    request = ask("Give me a color as JSON.", response_format={"type": "json_object"}, max_tokens=32)

    assert isinstance(json.loads(engine.chat(request)["choices"][0]["message"]["content"]), dict)


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_call_has_valid_arguments(engine: LlamaEngine, tool_choice: object) -> None:
    request = {"messages": WEATHER_QUESTION, "tools": [WEATHER_TOOL], "tool_choice": tool_choice, "max_tokens": 48}

    choice = engine.chat(request)["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    jsonschema.validate(json.loads(call["function"]["arguments"]), WEATHER_TOOL["function"]["parameters"])


def test_forced_tool_call_streams_as_chunks(engine: LlamaEngine) -> None:
    request = {
        "messages": WEATHER_QUESTION,
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "max_tokens": 48,
        "stream_options": {"include_usage": True},
    }

    chunks = list(engine.chat_stream(request))

    (call,) = chunks[0]["choices"][0]["delta"]["tool_calls"]
    assert call["index"] == 0 and call["function"]["name"] == "get_weather"
    assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_tool_result_continues_the_conversation(engine: LlamaEngine) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [
        *WEATHER_QUESTION,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 31, "sky": "sunny"}'},
    ]

    answer = engine.chat({"messages": messages, "tools": [WEATHER_TOOL], "max_tokens": 40, "temperature": 0})

    assert "31" in answer["choices"][0]["message"]["content"]


def test_unknown_named_tool_is_rejected(engine: LlamaEngine) -> None:
    request = {"messages": WEATHER_QUESTION, "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}}

    with pytest.raises(InvalidRequest) as error:
        engine.chat(request)
    assert error.value.param == "tool_choice"


def test_prompt_over_the_context_window_is_refused(engine: LlamaEngine) -> None:
    with pytest.raises(ContextLengthExceeded):
        engine.chat(ask("hello " * (engine.context_length + 100)))
    with pytest.raises(ContextLengthExceeded):
        list(engine.chat_stream(ask("hello " * (engine.context_length + 100))))


def test_wrong_parameter_type_names_the_parameter(engine: LlamaEngine) -> None:
    with pytest.raises(InvalidRequest) as error:
        engine.chat(ask("hi", temperature="hot"))
    assert error.value.param == "temperature"


def test_image_parts_are_refused_by_a_text_model(engine: LlamaEngine) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}

    with pytest.raises(InvalidRequest) as error:
        engine.chat({"messages": [{"role": "user", "content": [image]}]})
    assert error.value.param == "messages"


def test_text_content_parts_and_developer_role(engine: LlamaEngine) -> None:
    messages = [
        {"role": "developer", "content": "Reply with the single word: pong."},
        {"role": "user", "content": [{"type": "text", "text": "ping"}]},
    ]

    response = engine.chat({"messages": messages, "max_tokens": 8, "temperature": 0})

    assert "pong" in response["choices"][0]["message"]["content"].lower()


def test_logprobs_and_several_choices(engine: LlamaEngine) -> None:
    response = engine.chat(ask("Say hi.", n=2, logprobs=True, top_logprobs=2, max_tokens=4, seed=3))

    assert [choice["index"] for choice in response["choices"]] == [0, 1]
    entry = response["choices"][0]["logprobs"]["content"][0]
    assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2


# -- legacy completions -----------------------------------------------------------


def test_completion_with_echo_and_logprobs(engine: LlamaEngine) -> None:
    prompt = "The capital of France is"

    response = engine.complete({"prompt": prompt, "max_tokens": 3, "temperature": 0, "echo": True, "logprobs": 2})

    choice = response["choices"][0]
    assert response["object"] == "text_completion" and response["id"].startswith("cmpl-")
    assert choice["text"].startswith(prompt + " Paris")
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == len(logprobs["text_offset"]) == 3
    assert len(logprobs["top_logprobs"][0]) == 2


def test_completion_prompt_forms(engine: LlamaEngine) -> None:
    tokens = engine.tokenize("The capital of France is")

    from_tokens = engine.complete({"prompt": tokens, "max_tokens": 2, "temperature": 0, "echo": True})
    from_list = engine.complete({"prompt": ["One two three", "Red green"], "max_tokens": 2, "temperature": 0})

    assert from_tokens["choices"][0]["text"].startswith("The capital of France is")
    assert [choice["index"] for choice in from_list["choices"]] == [0, 1]
    assert engine.detokenize(tokens) == "The capital of France is"


def test_completion_suffix_fills_the_middle(engine: LlamaEngine) -> None:
    request = {"prompt": "def add(a, b):\n", "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 8, "temperature": 0}

    assert "return a + b" in engine.complete(request)["choices"][0]["text"]


def test_best_of_keeps_n_choices(engine: LlamaEngine) -> None:
    response = engine.complete({"prompt": "Hello", "max_tokens": 3, "best_of": 3, "n": 1, "seed": 5})

    assert len(response["choices"]) == 1
    assert response["choices"][0]["logprobs"] is None


def test_completion_stream_matches_unstreamed(engine: LlamaEngine) -> None:
    request = {"prompt": "Once upon a time", "max_tokens": 8, "seed": 11, "temperature": 0.9, "echo": True}

    whole = engine.complete(request)["choices"][0]["text"]
    chunks = list(engine.complete_stream(request))

    assert "".join(choice["text"] for chunk in chunks for choice in chunk["choices"]) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_completion_stream_of_several_prompts(engine: LlamaEngine) -> None:
    request = {"prompt": ["One two", "Red green"], "max_tokens": 2, "temperature": 0, "echo": True, "logprobs": 1}

    chunks = list(engine.complete_stream(request))

    texts = {index: "".join(c["text"] for chunk in chunks for c in chunk["choices"] if c["index"] == index) for index in (0, 1)}
    assert texts[0].startswith("One two") and texts[1].startswith("Red green")
    first = next(c for chunk in chunks for c in chunk["choices"] if c["index"] == 1 and c["logprobs"])
    # Offsets count from the start of the returned text, echoed prompt included.
    assert first["logprobs"]["text_offset"][0] == len("Red green")
