"""The Responses and Conversations services in-process, over the fake llama and a real SQLite database.

The fake chat model echoes the last user message word by word, and answers a
named tool choice with one call to that tool, so every output here is known
in advance; bodies and stream events are checked against the spec's schemas.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from hearth.caller import Caller
from hearth.chat.service import ChatService
from hearth.errors import APIError, InvalidRequest, NotFound
from hearth.jobs import JobQueue, JobStatus, Worker
from hearth.responses.conversations import ConversationService
from hearth.responses.protocol import (
    AddItemsRequest,
    CreateConversationRequest,
    CreateResponseRequest,
    Response,
)
from hearth.responses.service import ResponseService
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.pagination import PageRequest
from hearth.store.tables import Organization, Project, StoredResponse
from tests.services.conftest import CALLER, Hearth
from tests.spec import assert_matches_schema

MODEL = "gpt-4o-mini"
OTHER = Caller(organization_id=CALLER.organization_id, project_id="proj_other")
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
           "strict": True}


def request(**fields: Any) -> CreateResponseRequest:
    return CreateResponseRequest.model_validate({"model": MODEL, "input": "hello there brave world", **fields})


@dataclass
class Env:
    db: Database
    queue: JobQueue
    responses: ResponseService
    conversations: ConversationService
    hearth: Hearth

    def sent(self) -> dict[str, Any]:
        """The last request the fake model received."""
        return self.hearth.engine(MODEL).requests[-1]

    async def run_jobs(self, response_id: str) -> Response:
        worker = Worker(self.queue, self.responses.handlers(), concurrency=1, poll_interval=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(20):
                while (response := self.responses.retrieve(CALLER, response_id)).status in ("queued", "in_progress"):
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await task
        return response


@asynccontextmanager
async def environment(hearth: Hearth, root: Path) -> AsyncIterator[Env]:
    db = Database(f"sqlite:///{root / 'hearth.db'}")
    db.migrate()
    with db.session() as session:
        session.add(Organization(id=CALLER.organization_id, name="Test", created_at=now()))
        for project_id in (CALLER.project_id, OTHER.project_id):
            session.add(Project(id=project_id, organization_id=CALLER.organization_id, name=project_id,
                                status="active", created_at=now()))
    queue = JobQueue(db)
    chat = ChatService(hearth.models, hearth.meter)
    try:
        yield Env(db, queue, ResponseService(db, queue, chat), ConversationService(db), hearth)
    finally:
        db.dispose()


Scenario = Callable[[Env], Coroutine[Any, Any, None]]


@pytest.fixture
def run_in(hearth: Hearth, tmp_path: Path) -> Iterator[Callable[[Scenario], None]]:
    def run(scenario: Scenario) -> None:
        async def main() -> None:
            async with environment(hearth, tmp_path) as env:
                await scenario(env)
        asyncio.run(main())
    yield run


def body_of(response: Response) -> dict[str, Any]:
    body = json.loads(response.model_dump_json())
    assert_matches_schema(body, "Response")
    return body


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    events = [event async for event in stream]
    for event in events:
        assert_matches_schema(event, "ResponseStreamEvent")
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


# -- creating -------------------------------------------------------------------------------


def test_create_answers_stores_and_meters(run_in: Callable[[Scenario], None]) -> None:
    """A plain response: the model's text as one message, usage, a stored copy, one usage event."""
    async def scenario(env: Env) -> None:
        response = await env.responses.create(CALLER, request(instructions="be brief", metadata={"k": "v"}))

        body = body_of(response)
        assert (body["status"], body["model"], body["instructions"], body["metadata"]) == (
            "completed", MODEL, "be brief", {"k": "v"})
        [message] = body["output"]
        assert (message["type"], message["role"], message["status"]) == ("message", "assistant", "completed")
        assert message["content"][0]["text"] == "hello there brave world"
        assert body["usage"]["input_tokens"] == 6 and body["usage"]["output_tokens"] == 5
        assert body["usage"]["total_tokens"] == 11
        assert env.sent()["messages"] == [{"role": "system", "content": "be brief"},
                                          {"role": "user", "content": "hello there brave world"}]
        assert body_of(env.responses.retrieve(CALLER, response.id)) == body
        event = env.hearth.only_event()
        assert (event.kind, event.endpoint, event.model) == ("completions", "/v1/responses", MODEL)
        assert (event.input_tokens, event.output_tokens) == (6, 5)

    run_in(scenario)


def test_text_format_reaches_the_model_as_response_format(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                  "additionalProperties": False}
        response = await env.responses.create(CALLER, request(
            text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}}))
        assert env.sent()["response_format"] == {"type": "json_schema", "json_schema": {
            "name": "thing", "schema": schema, "strict": True}}
        assert body_of(response)["text"]["format"]["name"] == "thing"
        await env.responses.create(CALLER, request(text={"format": {"type": "json_object"}}))
        assert env.sent()["response_format"] == {"type": "json_object"}

    run_in(scenario)


def test_function_call_round_trip_through_previous_response_id(run_in: Callable[[Scenario], None]) -> None:
    """A forced call comes back as a function_call item; its output, sent with previous_response_id,
    reaches the model after the whole earlier turn."""
    async def scenario(env: Env) -> None:
        first = await env.responses.create(CALLER, request(
            input="weather in Paris", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}))
        body = body_of(first)
        [call] = body["output"]
        assert (call["type"], call["name"], call["call_id"], call["status"]) == (
            "function_call", "get_weather", "call_fake", "completed")
        assert body["tools"] == [WEATHER]
        assert env.sent()["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

        second = await env.responses.create(CALLER, request(
            previous_response_id=first.id, tools=[WEATHER],
            input=[{"type": "function_call_output", "call_id": "call_fake", "output": "sunny"},
                   {"role": "user", "content": "so what now"}]))
        assert body_of(second)["previous_response_id"] == first.id
        assert env.sent()["messages"] == [
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_fake", "type": "function", "function": {
                "name": "get_weather", "arguments": call["arguments"]}}]},
            {"role": "tool", "tool_call_id": "call_fake", "content": "sunny"},
            {"role": "user", "content": "so what now"},
        ]
        assert second.output[0]["content"][0]["text"] == "so what now"

    run_in(scenario)


def test_store_false_keeps_nothing(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        response = await env.responses.create(CALLER, request(store=False))
        assert response.store is False and response.status == "completed"
        with pytest.raises(NotFound):
            env.responses.retrieve(CALLER, response.id)
        with pytest.raises(InvalidRequest) as refused:
            await env.responses.create(CALLER, request(previous_response_id=response.id))
        assert (refused.value.param, refused.value.code) == ("previous_response_id", "previous_response_not_found")
        with env.db.session() as session:
            assert session.scalars(select(StoredResponse)).all() == []

    run_in(scenario)


def test_another_project_sees_nothing(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        response = await env.responses.create(CALLER, request())
        page = PageRequest(limit=20)
        for action in (lambda: env.responses.retrieve(OTHER, response.id),
                       lambda: env.responses.input_items(OTHER, response.id, page),
                       lambda: env.responses.delete(OTHER, response.id),
                       lambda: env.responses.cancel(OTHER, response.id)):
            with pytest.raises(NotFound):
                action()
        with pytest.raises(InvalidRequest) as refused:
            await env.responses.create(OTHER, request(previous_response_id=response.id))
        assert refused.value.code == "previous_response_not_found"
        assert env.responses.retrieve(CALLER, response.id).id == response.id

    run_in(scenario)


@pytest.mark.parametrize("tool", [
    {"type": "web_search"}, {"type": "web_search_preview"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "computer_use_preview", "display_width": 1, "display_height": 1, "environment": "linux"},
    {"type": "image_generation"}, {"type": "mcp", "server_label": "x", "server_url": "https://example.com"},
    {"type": "code_interpreter", "container": {"type": "auto"}},
])
def test_built_in_tools_are_refused_by_name(run_in: Callable[[Scenario], None], tool: dict[str, Any]) -> None:
    async def scenario(env: Env) -> None:
        with pytest.raises(InvalidRequest) as refused:
            await env.responses.create(CALLER, request(tools=[WEATHER, tool]))
        assert refused.value.param == "tools[1]"
        assert f"'{tool['type']}'" in refused.value.message
        assert env.hearth.meter.events == []

    run_in(scenario)


def test_refusals_name_their_parameter(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        cases = [
            ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
             "input[0].content[0]"),
            ({"input": [{"type": "reasoning", "summary": []}]}, "input[0]"),
            ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
            ({"background": True, "store": False}, "background"),
            ({"previous_response_id": "resp_missing"}, "previous_response_id"),
            ({"conversation": "conv_missing"}, "conversation"),
            ({"prompt": {"id": "pmpt_1"}}, "prompt"),
            ({"tool_choice": {"type": "web_search_preview"}, "tools": [WEATHER]}, "tool_choice"),
            ({"include": ["file_search_call.results"]}, "include[0]"),
            ({"max_output_tokens": 100}, "max_output_tokens"),
            ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]}, "input[0].call_id"),
            ({"input": []}, "input"),
        ]
        for fields, param in cases:
            with pytest.raises((InvalidRequest, NotFound)) as refused:
                await env.responses.create(CALLER, request(**fields))
            assert refused.value.param == param, (fields, refused.value.message)
        # A prompt too long for the context names the input.
        with pytest.raises(InvalidRequest) as refused:
            await env.responses.create(CALLER, request(input="word " * 70))
        assert (refused.value.param, refused.value.code) == ("input", "context_length_exceeded")

    run_in(scenario)


def test_input_files_are_read_as_text(run_in: Callable[[Scenario], None]) -> None:
    """An inline text file (data URL or bare base64) reaches the model as text; other files are refused."""
    async def scenario(env: Env) -> None:
        note = base64.b64encode(b"bananas are yellow").decode()
        await env.responses.create(CALLER, request(input=[{"role": "user", "content": [
            {"type": "input_file", "filename": "note.txt", "file_data": f"data:text/plain;base64,{note}"},
            {"type": "input_text", "text": "what colour"}]}]))
        assert env.sent()["messages"] == [
            {"role": "user", "content": '<file name="note.txt">\nbananas are yellow\n</file>\nwhat colour'}]
        listed = env.responses.input_items(CALLER, (await env.responses.create(CALLER, request(input=[
            {"role": "user", "content": [{"type": "input_file", "file_data": note}]}]))).id, PageRequest(limit=5))
        assert listed.data[0]["content"] == [{"type": "input_file", "file_data": note}]
        refusals = [
            ({"type": "input_file", "filename": "x.pdf", "file_data": base64.b64encode(b"%PDF\xff\xfe").decode()},
             "input[0].content[0]"),
            ({"type": "input_file", "file_data": "not base64!"}, "input[0].content[0].file_data"),
            ({"type": "input_file", "file_url": "https://example.com/a.txt"}, "input[0].content[0].file_url"),
            ({"type": "input_file"}, "input[0].content[0]"),
        ]
        for part, param in refusals:
            with pytest.raises(InvalidRequest) as refused:
                await env.responses.create(CALLER, request(input=[{"role": "user", "content": [part]}]))
            assert refused.value.param == param, refused.value.message

    run_in(scenario)


def test_logprobs_when_included(run_in: Callable[[Scenario], None]) -> None:
    """include message.output_text.logprobs asks the model for them and returns them per token."""
    async def scenario(env: Env) -> None:
        response = await env.responses.create(CALLER, request(include=["message.output_text.logprobs"],
                                                              top_logprobs=2))
        assert (env.sent()["logprobs"], env.sent()["top_logprobs"]) == (True, 2)
        tokens = body_of(response)["output"][0]["content"][0]["logprobs"]
        assert [entry["token"] for entry in tokens] == ["hello", "there", "brave", "world"]
        events = await collect(await env.responses.stream(CALLER, request(
            stream=True, include=["message.output_text.logprobs"])))
        deltas = [event for event in events if event["type"] == "response.output_text.delta"]
        assert [event["logprobs"][0]["token"] for event in deltas] == ["hello", "there", "brave", "world"]

    run_in(scenario)


@pytest.mark.parametrize("fields", [
    {"input": ["just a string"]}, {"input": [{"role": "user", "content": [5]}]},
    {"input": [{"role": "user", "content": []}]}, {"input": [{"role": "user"}]},
    {"input": [{"type": "function_call", "call_id": "c", "name": 3, "arguments": "{}"}]},
    {"input": [{"type": "function_call_output", "call_id": "c", "output": {"a": 1}}]},
    {"tools": ["web"]}, {"tools": [{"type": "function"}]}, {"tools": [{"type": "function", "name": "bad name!"}]},
    {"tools": [WEATHER], "tool_choice": {"type": "function"}}, {"tools": [WEATHER], "tool_choice": "sometimes"},
    {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}},
    {"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": ["x"]}},
    {"tool_choice": "required"}, {"stream_options": {"include_obfuscation": False}},
    {"text": {"format": {"type": "json_schema", "name": "x", "schema": "not a schema"}}},
    {"previous_response_id": "resp_x", "conversation": "conv_x"}, {"store": False, "conversation": "conv_x"},
])
def test_malformed_requests_are_4xx(run_in: Callable[[Scenario], None], fields: dict[str, Any]) -> None:
    """Bad input of every shape is a client error with a parameter named, never a server error."""
    async def scenario(env: Env) -> None:
        try:
            body = request(**fields)
        except ValidationError:
            return  # refused by the wire model: a 400 naming the field, as every route words it
        with pytest.raises(APIError) as refused:
            await env.responses.create(CALLER, body)
        assert 400 <= refused.value.status_code < 500 and refused.value.param, refused.value.message

    run_in(scenario)


def test_max_output_tokens_cuts_the_answer_as_incomplete(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        said = " ".join(f"w{i}" for i in range(20))
        response = await env.responses.create(CALLER, request(input=said, max_output_tokens=16))
        body = body_of(response)
        assert (body["status"], body["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
        assert body["output"][0]["status"] == "incomplete"
        assert env.sent()["max_tokens"] == 16

    run_in(scenario)


def test_truncation_auto_drops_the_oldest_turns(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        first = await env.responses.create(CALLER, request(input="one " * 30))
        with pytest.raises(InvalidRequest):
            await env.responses.create(CALLER, request(previous_response_id=first.id, input="two " * 10))
        response = await env.responses.create(CALLER, request(previous_response_id=first.id, input="two " * 10,
                                                              truncation="auto"))
        assert response.status == "completed"
        assert [message["role"] for message in env.sent()["messages"]] == ["assistant", "user"]

    run_in(scenario)


# -- streams --------------------------------------------------------------------------------


def test_stream_tells_the_answer_as_semantic_events(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        events = await collect(await env.responses.stream(CALLER, request(stream=True)))
        kinds = [event["type"] for event in events]
        assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                             "response.content_part.added"]
        assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                              "response.output_item.done", "response.completed"]
        deltas = [event["delta"] for event in events if event["type"] == "response.output_text.delta"]
        assert "".join(deltas) == "hello there brave world" and len(deltas) == 4
        final = events[-1]["response"]
        assert final["status"] == "completed" and final["usage"]["output_tokens"] == 5
        assert final["output"][0]["id"] == events[2]["item"]["id"]
        assert body_of(env.responses.retrieve(CALLER, final["id"])) == final
        assert env.hearth.only_event().endpoint == "/v1/responses"
        # The stored response replays as the same kinds of events.
        replayed = await collect(await env.responses.replay(CALLER, final["id"], None))
        assert [event["type"] for event in replayed] == [kind for kind in kinds
                                                          if kind != "response.output_text.delta"][:4] + [
            "response.output_text.delta"] + kinds[-4:]
        after = await collect_tail(await env.responses.replay(CALLER, final["id"], len(replayed) - 2))
        assert [event["type"] for event in after] == ["response.completed"]

    run_in(scenario)


async def collect_tail(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in stream]


def _streamed_call(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """llama.cpp's chunks for one tool call: its name and id first, then the arguments in pieces."""
    frame = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": request["model"]}

    def delta(**fields: Any) -> dict[str, Any]:
        return {**frame, "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}

    yield delta(role="assistant", content=None)
    yield delta(tool_calls=[{"index": 0, "id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": ""}}])
    for piece in ('{"city": ', '"Paris"}'):
        yield delta(tool_calls=[{"index": 0, "function": {"arguments": piece}}])
    yield {**frame, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    yield {**frame, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}}


def test_stream_of_a_function_call(run_in: Callable[[Scenario], None]) -> None:
    """A streamed call is announced, its arguments arrive as deltas, and it ends whole."""
    async def scenario(env: Env) -> None:
        env.hearth.engine(MODEL).chat_stream = _streamed_call
        events = await collect(await env.responses.stream(CALLER, request(
            stream=True, tools=[WEATHER], tool_choice="required")))
        kinds = [event["type"] for event in events]
        assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                         "response.function_call_arguments.done", "response.output_item.done",
                         "response.completed"]
        assert events[2]["item"]["call_id"] == "call_1" and events[2]["item"]["arguments"] == ""
        assert events[5]["arguments"] == '{"city": "Paris"}' and events[5]["name"] == "get_weather"
        [call] = events[-1]["response"]["output"]
        assert (call["type"], call["status"], call["arguments"]) == ("function_call", "completed", '{"city": "Paris"}')
        assert events[-1]["response"]["usage"]["output_tokens"] == 9

    run_in(scenario)


def test_a_stream_left_early_is_stored_cancelled_and_metered(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        stream = await env.responses.stream(CALLER, request(stream=True))
        created = await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        assert env.responses.retrieve(CALLER, created["response"]["id"]).status == "cancelled"
        assert len(env.hearth.meter.events) == 1

    run_in(scenario)


# -- background -----------------------------------------------------------------------------


def test_background_response_runs_as_a_job(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        queued = await env.responses.create(CALLER, request(background=True))
        assert (queued.status, queued.background) == ("queued", True)
        assert_matches_schema(body_of(queued), "Response")
        done = await env.run_jobs(queued.id)
        assert done.status == "completed" and done.output[0]["content"][0]["text"] == "hello there brave world"
        event = env.hearth.only_event()
        assert (event.endpoint, event.batch) == ("/v1/responses", False)
        with pytest.raises(InvalidRequest):
            env.responses.cancel(CALLER, queued.id)  # finished: nothing to cancel
        plain = await env.responses.create(CALLER, request())
        with pytest.raises(InvalidRequest) as refused:
            env.responses.cancel(CALLER, plain.id)
        assert "background" in refused.value.message

    run_in(scenario)


def test_a_background_response_left_in_progress_is_run_again(run_in: Callable[[Scenario], None]) -> None:
    """A worker that died mid-generation leaves the response in progress; the job's next attempt finishes it."""
    async def scenario(env: Env) -> None:
        queued = await env.responses.create(CALLER, request(background=True))
        assert env.responses._claim(queued.id) is not None  # taken, then the worker vanished
        assert env.responses.retrieve(CALLER, queued.id).status == "in_progress"
        done = await env.run_jobs(queued.id)
        assert done.status == "completed" and len(env.hearth.meter.events) == 1

    run_in(scenario)


def test_cancelling_a_queued_background_response(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        queued = await env.responses.create(CALLER, request(background=True))
        cancelled = env.responses.cancel(CALLER, queued.id)
        assert cancelled.status == "cancelled"
        assert env.responses.cancel(CALLER, queued.id).status == "cancelled"  # again: the same answer
        with env.db.session() as session:
            job_id = session.get_one(StoredResponse, queued.id).job_id
        assert job_id is not None
        snapshot = env.queue.get(job_id)
        assert snapshot is not None and snapshot.status == JobStatus.CANCELLED
        assert env.hearth.meter.events == []

    run_in(scenario)


def test_background_stream_follows_the_job(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        stream = await env.responses.stream(CALLER, request(background=True, stream=True))
        worker = Worker(env.queue, env.responses.handlers(), concurrency=1, poll_interval=0.01)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(20):
                events = await collect(stream)
        finally:
            stop.set()
            await task
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"

    run_in(scenario)


# -- input items and conversations ------------------------------------------------------------


def test_input_items_page_in_both_orders(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        words = ["alpha", "beta", "gamma", "delta", "omega"]
        response = await env.responses.create(CALLER, request(
            input=[{"role": "user", "content": word} for word in words]))
        listing = env.responses.input_items(CALLER, response.id, PageRequest(limit=2))
        assert [item["content"][0]["text"] for item in listing.data] == ["omega", "delta"]
        assert listing.has_more and listing.first_id == listing.data[0]["id"]
        rest = env.responses.input_items(CALLER, response.id, PageRequest(limit=10, after=listing.last_id))
        assert [item["content"][0]["text"] for item in rest.data] == ["gamma", "beta", "alpha"]
        assert not rest.has_more
        ascending = env.responses.input_items(CALLER, response.id, PageRequest(limit=10, order="asc"))
        assert [item["content"][0]["text"] for item in ascending.data] == words
        assert_matches_schema(json.loads(ascending.model_dump_json()), "ResponseItemList")

    run_in(scenario)


def test_a_conversation_is_the_context_and_gains_each_turn(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        conversation = env.conversations.create(CALLER, CreateConversationRequest(
            items=[{"type": "message", "role": "system", "content": "speak plainly"}], metadata={"a": "b"}))
        assert_matches_schema(conversation.model_dump(mode="json"), "ConversationResource")
        response = await env.responses.create(CALLER, request(conversation=conversation.id))
        assert body_of(response)["conversation"] == {"id": conversation.id}
        assert env.sent()["messages"][0] == {"role": "system", "content": "speak plainly"}
        items = env.conversations.list_items(CALLER, conversation.id, PageRequest(limit=10, order="asc"))
        assert [(item["type"], item["role"]) for item in items.data] == [
            ("message", "system"), ("message", "user"), ("message", "assistant")]
        assert_matches_schema(json.loads(items.model_dump_json()), "ConversationItemList")
        env.conversations.add_items(CALLER, conversation.id, AddItemsRequest(
            items=[{"role": "user", "content": "second question"}]))
        await env.responses.create(CALLER, request(conversation={"id": conversation.id}, input=None))
        assert env.sent()["messages"][-1] == {"role": "user", "content": "second question"}
        with pytest.raises(NotFound):
            env.conversations.retrieve(OTHER, conversation.id)
        with pytest.raises(NotFound):
            await env.responses.create(OTHER, request(conversation=conversation.id))
        first = items.data[0]["id"]
        assert env.conversations.retrieve_item(CALLER, conversation.id, first)["role"] == "system"
        env.conversations.delete_item(CALLER, conversation.id, first)
        with pytest.raises(NotFound):
            env.conversations.retrieve_item(CALLER, conversation.id, first)
        assert env.conversations.delete(CALLER, conversation.id).deleted
        with pytest.raises(NotFound):
            env.conversations.retrieve(CALLER, conversation.id)

    run_in(scenario)


def test_delete_removes_the_response_and_its_items(run_in: Callable[[Scenario], None]) -> None:
    async def scenario(env: Env) -> None:
        response = await env.responses.create(CALLER, request())
        deleted = env.responses.delete(CALLER, response.id)
        assert (deleted.id, deleted.deleted) == (response.id, True)
        with pytest.raises(NotFound):
            env.responses.retrieve(CALLER, response.id)
        with pytest.raises(NotFound):
            env.responses.delete(CALLER, response.id)

    run_in(scenario)
