"""ChatService over the fake llama: wire shapes, usage metering, streams, refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearth.chat.protocol import ChatCompletion, ChatCompletionChunk, CreateChatCompletionRequest
from hearth.chat.service import ChatService
from hearth.errors import APIError, InvalidRequest, NotFound
from tests.services.conftest import CALLER, CREATED, Hearth

MODEL = "gpt-4o-mini"
SAID = "hello there brave world"
# The fake's prompt is every message's words; its answer is the last user message's, then an end token.
PROMPT_TOKENS = 6
ANSWER_TOKENS = 5


def request(**fields: Any) -> CreateChatCompletionRequest:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": SAID}]
    return CreateChatCompletionRequest.model_validate({"model": MODEL, "messages": messages, **fields})


def service(hearth: Hearth) -> ChatService:
    return ChatService(hearth.models, hearth.meter)


def test_create_returns_a_completion_metered_by_its_usage(hearth: Hearth) -> None:
    """A completion has the wire shape, the answer and its usage; the one event counts that usage."""
    completion = asyncio.run(service(hearth).create(CALLER, request()))

    assert ChatCompletion.model_validate(completion.model_dump(mode="json")) == completion
    assert (completion.id, completion.created, completion.model) == ("chatcmpl-fake", CREATED, MODEL)
    assert completion.system_fingerprint == "fp_fake-llama"
    [choice] = completion.choices
    assert (choice.message.content, choice.finish_reason, choice.logprobs) == (SAID, "stop", None)
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        PROMPT_TOKENS, ANSWER_TOKENS, PROMPT_TOKENS + ANSWER_TOKENS)
    event = hearth.only_event()
    assert (event.kind, event.endpoint, event.model) == ("completions", "/v1/chat/completions", MODEL)
    assert (event.input_tokens, event.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert hearth.runner(MODEL).admitted == 0


def test_background_create_is_metered_as_batch(hearth: Hearth) -> None:
    """Work done for a job (a batch line) is recorded with batch=True."""
    completion = asyncio.run(service(hearth).create(CALLER, request(), background=True))

    event = hearth.only_event(batch=True)
    assert event.output_tokens == completion.usage.completion_tokens


def test_several_choices_count_every_choice(hearth: Hearth) -> None:
    """With n=2 usage counts both choices' tokens (end tokens included) and the prompt once."""
    completion = asyncio.run(service(hearth).create(CALLER, request(n=2)))

    assert [choice.index for choice in completion.choices] == [0, 1]
    assert completion.usage.completion_tokens == 2 * ANSWER_TOKENS
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert hearth.only_event().output_tokens == 2 * ANSWER_TOKENS


def test_max_completion_tokens_cuts_the_answer(hearth: Hearth) -> None:
    """max_completion_tokens reaches the engine as max_tokens; a cut answer ends with "length"."""
    completion = asyncio.run(service(hearth).create(CALLER, request(max_completion_tokens=2)))

    assert hearth.engine(MODEL).requests[-1]["max_tokens"] == 2
    assert completion.choices[0].message.content == "hello there"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == hearth.only_event().output_tokens == 2


def test_legacy_functions_answer_with_a_function_call(hearth: Hearth) -> None:
    """The deprecated functions/function_call reach the engine as tools and come back as function_call."""
    body = request(functions=[{"name": "lookup", "parameters": {"type": "object"}}],
                   function_call={"name": "lookup"})

    completion = asyncio.run(service(hearth).create(CALLER, body))

    sent = hearth.engine(MODEL).requests[-1]
    assert sent["tools"] == [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    [choice] = completion.choices
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None
    assert choice.message.function_call is not None and choice.message.function_call.name == "lookup"


def test_logprobs_come_back_per_token(hearth: Hearth) -> None:
    """logprobs=true returns the engine's token log probabilities in the wire shape."""
    completion = asyncio.run(service(hearth).create(CALLER, request(logprobs=True)))

    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [entry.token for entry in logprobs.content] == SAID.split()


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


def test_stream_sends_the_answer_and_its_usage(hearth: Hearth) -> None:
    """A whole stream: chunks carry the answer, the usage chunk matches the one event recorded."""
    async def scenario() -> list[ChatCompletionChunk]:
        stream = await service(hearth).stream(CALLER, request(stream=True, stream_options={"include_usage": True}))
        return await collect(stream)

    chunks = asyncio.run(scenario())

    for chunk in chunks:
        assert ChatCompletionChunk.model_validate(chunk.model_dump(mode="json")) == chunk
    assert {(chunk.id, chunk.model) for chunk in chunks} == {("chatcmpl-fake", MODEL)}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.delta.content or "" for chunk in chunks for c in chunk.choices) == SAID
    assert [c.finish_reason for chunk in chunks for c in chunk.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, ANSWER_TOKENS)
    event = hearth.only_event()
    assert (event.input_tokens, event.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert hearth.runner(MODEL).admitted == 0


def test_stream_without_include_usage_is_still_metered_in_full(hearth: Hearth) -> None:
    """No usage chunk is sent unless asked for, yet the event has the engine's full counts."""
    async def scenario() -> list[ChatCompletionChunk]:
        return await collect(await service(hearth).stream(CALLER, request(stream=True)))

    chunks = asyncio.run(scenario())

    assert all(chunk.usage is None for chunk in chunks)
    event = hearth.only_event()
    assert (event.input_tokens, event.output_tokens) == (PROMPT_TOKENS, ANSWER_TOKENS)


def test_stream_of_several_choices_counts_the_prompt_once(hearth: Hearth) -> None:
    """Per-choice usage events are summed into one usage: every choice's tokens, the prompt once."""
    async def scenario() -> list[ChatCompletionChunk]:
        body = request(stream=True, n=2, stream_options={"include_usage": True})
        return await collect(await service(hearth).stream(CALLER, body))

    chunks = asyncio.run(scenario())

    assert [chunk for chunk in chunks if chunk.usage is not None] == [chunks[-1]]
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, 2 * ANSWER_TOKENS)
    assert hearth.only_event().output_tokens == 2 * ANSWER_TOKENS


def test_a_whole_answer_abandoned_by_its_caller_stops_generating(hearth: Hearth) -> None:
    """Cancelling create() (the HTTP layer does when the client hangs up) sets the engine's stop,
    frees the place at once and meters nothing: no answer was given."""
    engine = hearth.engine(MODEL)

    async def scenario() -> None:
        answer = asyncio.ensure_future(service(hearth).create(
            CALLER, request(messages=[{"role": "user", "content": "hold on please"}])))
        while not engine.holding.is_set():
            await asyncio.sleep(0.01)
        answer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await answer
        assert hearth.runner(MODEL).admitted == 0

    asyncio.run(scenario())

    assert hearth.meter.events == []


@pytest.mark.parametrize("items_read", [1, 2])
def test_a_closed_stream_is_metered_once_and_frees_its_place(hearth: Hearth, items_read: int) -> None:
    """Closing after the role chunk or the first word records the tokens streamed so far, releases
    the admission, and closes the engine's generator (generation stops)."""
    async def scenario() -> None:
        stream = await service(hearth).stream(CALLER, request(stream=True))
        for _ in range(items_read):
            await anext(stream)
        await stream.aclose()

    asyncio.run(scenario())

    assert hearth.only_event().output_tokens == items_read - 1
    assert hearth.runner(MODEL).admitted == 0
    assert hearth.engine(MODEL).ended.wait(5)


def test_a_stream_closed_before_its_first_read_is_metered_and_frees_its_place(hearth: Hearth) -> None:
    """A client gone before the first chunk is sent: the prompt was processed, so it is metered, and
    the place is given back at once."""
    async def scenario() -> None:
        stream = await service(hearth).stream(CALLER, request(stream=True))
        await stream.aclose()
        assert hearth.runner(MODEL).admitted == 0

    asyncio.run(scenario())

    hearth.only_event()


def test_a_stream_the_engine_refuses_raises_before_its_first_chunk(hearth: Hearth) -> None:
    """A prompt over the context window is a 400 raised by stream() itself: nothing metered, place freed."""
    async def scenario() -> None:
        await service(hearth).stream(CALLER, request(stream=True, max_tokens=64))

    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(scenario())

    assert (refused.value.param, refused.value.code) == ("messages", "context_length_exceeded")
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


TOOL = {"type": "function", "function": {"name": "lookup"}}


@pytest.mark.parametrize(("fields", "param"), [
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"n": 3}, "n"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logit_bias": {"hello": 1}}, "logit_bias"),
    ({"logit_bias": {"1000": 1}}, "logit_bias"),
    ({"max_tokens": 65}, "max_tokens"),
    ({"max_completion_tokens": 2**32 + 5}, "max_completion_tokens"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "custom", "custom": {"name": "free"}}]}, "tools[0]"),
    ({"functions": [{"name": "lookup"}], "tools": [TOOL]}, "functions"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, "messages[0].content[1]"),
])
def test_requests_the_service_refuses_never_reach_the_engine(hearth: Hearth, fields: dict[str, Any],
                                                             param: str) -> None:
    """Each refusal is an InvalidRequest naming its field, raised before the model is admitted."""
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(service(hearth).create(CALLER, request(**fields)))

    assert refused.value.param == param
    assert hearth.engine(MODEL).requests == []
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


def test_a_prompt_over_the_context_window_is_a_400(hearth: Hearth) -> None:
    """The engine's context-length refusal becomes InvalidRequest(context_length_exceeded) on messages."""
    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(service(hearth).create(CALLER, request(max_tokens=64)))

    assert (refused.value.param, refused.value.code, refused.value.status_code) == (
        "messages", "context_length_exceeded", 400)
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


@pytest.mark.parametrize(("model", "error", "code"), [
    ("no-such-model", NotFound, "model_not_found"),
    ("gpt-4o", NotFound, "model_not_found"),  # in the catalog, not pulled
    ("text-embedding-3-small", InvalidRequest, "model_not_supported"),
])
def test_a_model_that_cannot_chat_is_refused(hearth: Hearth, model: str, error: type[APIError],
                                             code: str) -> None:
    """Unknown and unpulled models are model_not_found (404); a model of another kind is model_not_supported."""
    with pytest.raises(error) as refused:
        asyncio.run(service(hearth).create(CALLER, request(model=model)))

    assert (refused.value.param, refused.value.code) == ("model", code)
