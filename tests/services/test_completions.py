"""CompletionService over the fake llama: prompts in their forms, echo, usage metering, streams, refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hearth.completions.protocol import CreateCompletionRequest, TextCompletion
from hearth.completions.service import CompletionService
from hearth.errors import InvalidRequest, NotFound
from tests.services.conftest import CALLER, CREATED, Hearth

MODEL = "gpt-4o-mini"
PROMPT = "one two three"


def request(**fields: Any) -> CreateCompletionRequest:
    return CreateCompletionRequest.model_validate({"model": MODEL, "prompt": PROMPT, **fields})


def service(hearth: Hearth) -> CompletionService:
    return CompletionService(hearth.models, hearth.meter)


def test_create_returns_a_completion_metered_by_its_usage(hearth: Hearth) -> None:
    """The completion has the wire shape and the fake's continuation; the one event counts its usage."""
    completion = asyncio.run(service(hearth).create(CALLER, request()))

    assert TextCompletion.model_validate(completion.model_dump(mode="json")) == completion
    assert (completion.id, completion.created, completion.model) == ("cmpl-fake", CREATED, MODEL)
    [choice] = completion.choices
    assert (choice.index, choice.text, choice.finish_reason) == (0, " one two three", "stop")
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 4, 7)
    event = hearth.only_event()
    assert (event.kind, event.endpoint, event.model) == ("completions", "/v1/completions", MODEL)
    assert (event.input_tokens, event.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert hearth.runner(MODEL).admitted == 0


def test_background_create_is_metered_as_batch(hearth: Hearth) -> None:
    """Work done for a job is recorded with batch=True."""
    asyncio.run(service(hearth).create(CALLER, request(), background=True))

    hearth.only_event(batch=True)


def test_echo_puts_the_prompt_before_the_answer(hearth: Hearth) -> None:
    """echo reaches the engine; the echoed prompt is not counted as generated."""
    completion = asyncio.run(service(hearth).create(CALLER, request(echo=True)))

    assert completion.choices[0].text == "one two three one two three"
    assert completion.usage is not None and completion.usage.completion_tokens == 4


def test_token_prompts_count_their_tokens(hearth: Hearth) -> None:
    """A prompt of token ids counts one prompt token per id."""
    completion = asyncio.run(service(hearth).create(CALLER, request(prompt=[7, 8, 9, 10])))

    assert completion.usage is not None and completion.usage.prompt_tokens == 4
    assert hearth.only_event().input_tokens == 4


def test_several_prompts_are_each_answered_and_counted(hearth: Hearth) -> None:
    """An array of prompts gives a choice each; usage sums every prompt and every choice."""
    completion = asyncio.run(service(hearth).create(CALLER, request(prompt=["a b", "c d e"], max_tokens=2)))

    assert [(choice.index, choice.text) for choice in completion.choices] == [(0, " a b"), (1, " c d")]
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 4)
    event = hearth.only_event()
    assert (event.input_tokens, event.output_tokens) == (5, 4)


def test_max_tokens_zero_returns_the_prompt_without_generating(hearth: Hearth) -> None:
    """max_tokens=0 never calls the engine's completion: each choice is the echoed prompt."""
    completion = asyncio.run(service(hearth).create(CALLER, request(max_tokens=0, echo=True)))

    assert hearth.engine(MODEL).requests == []
    assert [(choice.text, choice.finish_reason) for choice in completion.choices] == [(PROMPT, "length")]
    usage = completion.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3, 0)
    assert hearth.only_event().output_tokens == 0


async def collect(stream: Any) -> list[Any]:
    return [item async for item in stream]


def test_stream_sends_the_answer_and_its_usage(hearth: Hearth) -> None:
    """A whole stream: chunks carry the continuation, the usage chunk matches the one event recorded."""
    async def scenario() -> list[TextCompletion]:
        body = request(stream=True, stream_options={"include_usage": True})
        return await collect(await service(hearth).stream(CALLER, body))

    chunks = asyncio.run(scenario())

    for chunk in chunks:
        assert TextCompletion.model_validate(chunk.model_dump(mode="json")) == chunk
    assert "".join(c.text for chunk in chunks for c in chunk.choices) == " one two three"
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (3, 4)
    event = hearth.only_event()
    assert (event.input_tokens, event.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert hearth.runner(MODEL).admitted == 0


def test_stream_of_several_prompts_counts_every_prompt(hearth: Hearth) -> None:
    """Each prompt's tokens count once however many choices it has; every choice's tokens count."""
    async def scenario() -> list[TextCompletion]:
        body = request(prompt=["a b", "c d e"], n=2, stream=True, stream_options={"include_usage": True})
        return await collect(await service(hearth).stream(CALLER, body))

    chunks = asyncio.run(scenario())

    assert {c.index for chunk in chunks for c in chunk.choices} == {0, 1, 2, 3}
    usage = chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (5, 2 * 3 + 2 * 4)
    assert hearth.only_event().output_tokens == 14


@pytest.mark.parametrize("items_read", [1, 2])
def test_a_closed_stream_is_metered_once_and_frees_its_place(hearth: Hearth, items_read: int) -> None:
    """Closing after a word or two records the tokens streamed so far, releases the admission and
    closes the engine's generator."""
    async def scenario() -> None:
        stream = await service(hearth).stream(CALLER, request(stream=True))
        for _ in range(items_read):
            await anext(stream)
        await stream.aclose()

    asyncio.run(scenario())

    assert hearth.only_event().output_tokens == items_read
    assert hearth.runner(MODEL).admitted == 0
    assert hearth.engine(MODEL).ended.wait(5)


def test_several_choices_count_like_the_same_stream(hearth: Hearth) -> None:
    """Two choices that end by themselves count the same tokens whole as streamed."""
    async def scenario() -> tuple[TextCompletion, list[TextCompletion]]:
        whole = await service(hearth).create(CALLER, request(n=2))
        body = request(n=2, stream=True, stream_options={"include_usage": True})
        return whole, await collect(await service(hearth).stream(CALLER, body))

    whole, chunks = asyncio.run(scenario())

    assert [choice.finish_reason for choice in whole.choices] == ["stop", "stop"]
    assert whole.usage == chunks[-1].usage


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2, "best_of": 1}, "best_of"),
    ({"best_of": 2, "stream": True}, "best_of"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"logit_bias": {"one": 5}}, "logit_bias"),
    ({"logit_bias": {"99999": 5}}, "logit_bias"),
    ({"max_tokens": 2**63}, "max_tokens"),
    ({"n": 3}, "n"),
    ({"best_of": 3}, "best_of"),
])
def test_requests_the_service_refuses_never_reach_the_engine(hearth: Hearth, fields: dict[str, Any],
                                                             param: str) -> None:
    """Each refusal is an InvalidRequest naming its field, raised before the model is admitted."""
    body = request(**fields)
    call = service(hearth).stream if body.stream else service(hearth).create

    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(call(CALLER, body))

    assert refused.value.param == param
    assert hearth.engine(MODEL).requests == []
    assert hearth.meter.events == []


@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"suffix": "four"}, "suffix", None),
    ({"max_tokens": 64}, "prompt", "context_length_exceeded"),
])
@pytest.mark.parametrize("stream", [False, True])
def test_engine_refusals_are_400s_before_any_output(hearth: Hearth, fields: dict[str, Any], param: str,
                                                   code: str | None, stream: bool) -> None:
    """What llama.cpp refuses becomes an InvalidRequest, whole or streamed; nothing metered, place freed."""
    body = request(**fields, stream=stream)
    call = service(hearth).stream if stream else service(hearth).create

    with pytest.raises(InvalidRequest) as refused:
        asyncio.run(call(CALLER, body))

    assert (refused.value.param, refused.value.code) == (param, code)
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


def test_an_unknown_model_is_not_found(hearth: Hearth) -> None:
    """An unknown model is NotFound(model_not_found) on `model`."""
    with pytest.raises(NotFound) as refused:
        asyncio.run(service(hearth).create(CALLER, request(model="davinci-002")))

    assert (refused.value.param, refused.value.code, refused.value.status_code) == ("model", "model_not_found", 404)
