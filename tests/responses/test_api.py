"""/v1/responses and /v1/conversations through the official SDK and the OpenAI Agents SDK, on the
suite's live server and its real chat model.

Bodies are read raw where the schema is checked (the SDK's objects drop
what they do not know); streams go through the SDK's own stream helper,
whose accumulator refuses events out of order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from agents import Agent, ModelSettings, Runner, function_tool, set_tracing_disabled
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel
from sqlalchemy import select

from hearth.store.db import Database
from hearth.store.tables import UsageRecord
from tests.conftest import LiveServer
from tests.spec import assert_matches_schema
from tests.storage_backends import new_project_key

MODEL = "gpt-4o-mini"
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                          "additionalProperties": False},
           "strict": True}


@pytest.fixture(scope="module")
def db(server: LiveServer) -> Iterator[Database]:
    database = Database(f"sqlite:///{server.data_dir / 'hearth.db'}")
    yield database
    database.dispose()


def raw(server: LiveServer, method: str, path: str, api_key: str | None = None,
        headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.base_url}/v1{path}", timeout=300,
                         headers={"Authorization": f"Bearer {api_key or server.api_key}", **(headers or {})}, **kwargs)


def checked(response: httpx.Response, schema: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches_schema(body, schema)
    return body


def test_create_retrieve_and_delete(server: LiveServer, client: OpenAI, db: Database) -> None:
    """A plain response answers from the model, is stored, metered under completions, and deletes."""
    body = checked(raw(server, "POST", "/responses", json={
        "model": MODEL, "instructions": "Answer in one short sentence.", "input": "What colour is the sky?",
        "max_output_tokens": 40, "temperature": 0, "metadata": {"case": "plain"}}), "Response")
    assert body["status"] in ("completed", "incomplete") and body["metadata"] == {"case": "plain"}
    [message] = body["output"]
    assert message["type"] == "message" and message["content"][0]["text"].strip()
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0

    retrieved = client.responses.retrieve(body["id"])
    assert retrieved.output_text == message["content"][0]["text"]
    checked(raw(server, "GET", f"/responses/{body['id']}"), "Response")

    deadline = time.monotonic() + 60  # the meter writes its events off the request's path, in batches
    while True:
        with db.session() as session:
            event = session.scalars(select(UsageRecord).where(UsageRecord.endpoint == "/v1/responses")).first()
        if event is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert event is not None and event.kind == "completions"

    deleted = client.responses.delete(body["id"])
    assert deleted is None  # the SDK returns nothing for a delete
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(body["id"])


def test_stream_helper_assembles_the_answer(client: OpenAI) -> None:
    """The SDK's stream helper accepts every event in order and ends with the completed response."""
    with client.responses.stream(model=MODEL, input="Count from one to five.", max_output_tokens=40,
                                 temperature=0) as stream:
        seen = list(stream)
        final = stream.get_final_response()
    assert [event.sequence_number for event in seen] == list(range(len(seen)))
    assert seen[0].type == "response.created" and seen[-1].type == "response.completed"
    text = "".join(event.delta for event in seen if event.type == "response.output_text.delta")
    assert text and final.output_text == text
    assert client.responses.retrieve(final.id).output_text == text


def test_raw_stream_events_match_the_spec(server: LiveServer) -> None:
    with httpx.stream("POST", f"{server.base_url}/v1/responses", timeout=300,
                      headers={"Authorization": f"Bearer {server.api_key}"},
                      json={"model": MODEL, "input": "Say hi.", "stream": True, "max_output_tokens": 16}) as response:
        assert response.status_code == 200
        lines = list(response.iter_lines())
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    names = [line[7:] for line in lines if line.startswith("event: ")]
    assert names == [event["type"] for event in events]  # each event named by its type, as OpenAI sends them
    for event in events:
        assert_matches_schema(event, "ResponseStreamEvent")
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    replayed = raw(server, "GET", f"/responses/{events[-1]['response']['id']}", params={"stream": "true"})
    assert replayed.headers["content-type"].startswith("text/event-stream")
    kinds = [json.loads(line[6:])["type"] for line in replayed.text.splitlines() if line.startswith("data: ")]
    assert kinds[0] == "response.created" and kinds[-1] == events[-1]["type"]


def test_an_uploaded_text_file_is_read(client: OpenAI, server: LiveServer, db: Database) -> None:
    """An input_file naming one of the project's files gives the model its text; another project's is a 404."""
    uploaded = client.files.create(file=("secret.txt", b"The secret word is pineapple."), purpose="user_data")
    response = client.responses.create(model=MODEL, max_output_tokens=30, temperature=0, input=[
        {"role": "user", "content": [{"type": "input_file", "file_id": uploaded.id},
                                     {"type": "input_text", "text": "What is the secret word? Answer with the word."}]}])
    assert "pineapple" in response.output_text.lower()
    other = server.client(api_key=new_project_key(db)[2])
    with pytest.raises(openai.NotFoundError) as missing:
        other.responses.create(model=MODEL, input=[{"role": "user", "content": [
            {"type": "input_file", "file_id": uploaded.id}]}])
    assert missing.value.param == "input[0].content[0].file_id"  # type: ignore[attr-defined]


class City(BaseModel):
    name: str
    country: str


def test_json_schema_and_parse(client: OpenAI, server: LiveServer) -> None:
    """text.format json_schema constrains the answer; responses.parse reads it into the model."""
    parsed = client.responses.parse(model=MODEL, input="Name a city in France.", text_format=City,
                                    max_output_tokens=60, temperature=0)
    assert isinstance(parsed.output_parsed, City) and parsed.output_parsed.name

    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
              "additionalProperties": False}
    body = checked(raw(server, "POST", "/responses", json={
        "model": MODEL, "input": "What is 2 + 2?", "max_output_tokens": 30,
        "text": {"format": {"type": "json_schema", "name": "sum", "schema": schema, "strict": True}}}), "Response")
    assert isinstance(json.loads(body["output"][0]["content"][0]["text"])["answer"], int)
    assert body["text"]["format"]["name"] == "sum"


def test_function_call_round_trip_through_previous_response_id(client: OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="What is the weather in Paris?", tools=[WEATHER],  # type: ignore[list-item]
                                    tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=40)
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert "city" in json.loads(call.arguments)

    second = client.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER], max_output_tokens=60,  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id,
                "output": json.dumps({"temperature_c": 21, "sky": "sunny"})}], tool_choice="none")
    assert second.previous_response_id == first.id
    assert second.output_text.strip()
    items = client.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["function_call_output"]


def test_streamed_function_call(client: OpenAI) -> None:
    """A call streamed through the SDK's helper arrives whole, its arguments parsed against the strict tool."""
    with client.responses.stream(model=MODEL, input="What is the weather in Oslo?", tools=[WEATHER],  # type: ignore[list-item]
                                 tool_choice="required", max_output_tokens=40) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    [call] = final.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert isinstance(call.parsed_arguments, dict) and call.parsed_arguments["city"]  # type: ignore[union-attr]


def test_input_items_paginate(client: OpenAI, server: LiveServer) -> None:
    words = ["one", "two", "three", "four", "five"]
    response = client.responses.create(model=MODEL, max_output_tokens=16,
                                       input=[{"role": "user", "content": word} for word in words])
    first = client.responses.input_items.list(response.id, limit=2, order="asc")
    assert len(first.data) == 2 and first.has_more
    every = [item for item in client.responses.input_items.list(response.id, limit=2, order="asc")]
    assert [item.content[0].text for item in every] == words  # type: ignore[union-attr]
    body = checked(raw(server, "GET", f"/responses/{response.id}/input_items", params={"limit": 2}),
                   "ResponseItemList")
    assert [item["content"][0]["text"] for item in body["data"]] == ["five", "four"]
    with pytest.raises(openai.BadRequestError):
        client.responses.input_items.list(response.id, after="msg_nowhere")


def test_another_project_cannot_read_a_stored_response(client: OpenAI, server: LiveServer, db: Database) -> None:
    response = client.responses.create(model=MODEL, input="Hello.", max_output_tokens=16)
    other = server.client(api_key=new_project_key(db)[2])
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(response.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(response.id)
    with pytest.raises(openai.BadRequestError) as refused:
        other.responses.create(model=MODEL, input="Go on.", previous_response_id=response.id)
    assert refused.value.code == "previous_response_not_found"
    assert client.responses.retrieve(response.id).id == response.id


@pytest.mark.parametrize("tool", [
    {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "linux"},
    {"type": "image_generation"}, {"type": "mcp", "server_label": "x", "server_url": "https://example.com/mcp"},
    {"type": "code_interpreter", "container": {"type": "auto"}},
])
def test_unsupported_built_in_tools_are_refused_by_name(client: OpenAI, tool: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=MODEL, input="Hi.", tools=[tool])  # type: ignore[list-item]
    assert refused.value.param == "tools[0]"  # type: ignore[attr-defined]
    assert f"'{tool['type']}'" in refused.value.message


def test_bad_requests_get_clear_400s(server: LiveServer) -> None:
    cases = [
        ({"model": MODEL, "input": 5}, "input"),
        ({"model": MODEL, "input": "x", "temperature": "hot"}, "temperature"),
        ({"model": MODEL, "input": "x", "max_output_tokens": 4}, "max_output_tokens"),
        ({"model": MODEL, "input": "x", "surprise": True}, "surprise"),
        ({"model": MODEL, "input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": "x"}, "model"),
    ]
    for body, param in cases:
        response = raw(server, "POST", "/responses", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["param"] == param, (body, response.text)
    malformed = raw(server, "POST", "/responses", content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"]["type"] == "invalid_request_error"
    missing = raw(server, "POST", "/responses", json={"model": "no-such-model", "input": "x"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert raw(server, "GET", "/responses/resp_nowhere").status_code == 404


def test_background_response_is_pollable_and_cancellable(client: OpenAI, server: LiveServer) -> None:
    queued = client.responses.create(model=MODEL, input="Say hello.", background=True, max_output_tokens=16)
    assert queued.status in ("queued", "in_progress") and queued.background
    response = queued
    for _ in range(600):
        response = client.responses.retrieve(queued.id)
        if response.status not in ("queued", "in_progress"):
            break
        time.sleep(0.2)
    assert response.status in ("completed", "incomplete") and response.output_text
    checked(raw(server, "GET", f"/responses/{queued.id}"), "Response")

    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(queued.id)  # finished
    again = client.responses.create(model=MODEL, input="Tell a long story.", background=True, max_output_tokens=200)
    cancelled = client.responses.cancel(again.id)
    assert cancelled.status == "cancelled" or cancelled.status == "completed"
    assert client.responses.retrieve(again.id).status == cancelled.status


def test_conversations_hold_the_turns(client: OpenAI, server: LiveServer) -> None:
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "system", "content": "You answer in English."}], metadata={"topic": "x"})
    checked(raw(server, "GET", f"/conversations/{conversation.id}"), "ConversationResource")
    response = client.responses.create(model=MODEL, input="Hi!", conversation=conversation.id, max_output_tokens=16)
    assert response.conversation is not None and response.conversation.id == conversation.id
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [item.type for item in items.data] == ["message", "message", "message"]
    body = checked(raw(server, "GET", f"/conversations/{conversation.id}/items"), "ConversationItemList")
    assert body["data"][0]["role"] == "assistant"
    updated = client.conversations.update(conversation.id, metadata={"topic": "y"})
    assert updated.metadata == {"topic": "y"}
    assert client.conversations.delete(conversation.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_agents_sdk_runs_a_function_tool(server: LiveServer) -> None:
    """The Agents SDK's default (Responses) model path: the agent calls the tool, then answers.

    The first turn requires a tool call (a model this small may otherwise
    answer at once); the SDK resets tool_choice after the call, so the
    second turn is the model's free answer from the tool's result.
    """
    set_tracing_disabled(True)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        calls.append(city)
        return f"The weather in {city} is sunny and 21 degrees Celsius."

    client = AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)
    agent = Agent(name="Weather", instructions="Use the get_weather tool, then answer in one sentence.",
                  tools=[get_weather], model=OpenAIResponsesModel(MODEL, client),
                  model_settings=ModelSettings(tool_choice="required", max_tokens=80, temperature=0))
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=4))
    assert calls and calls[0]
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert [item.type for item in result.new_items][:2] == ["tool_call_item", "tool_call_output_item"]


def test_agents_sdk_streams_an_answer(server: LiveServer) -> None:
    """Runner.run_streamed consumes the semantic events and ends with the model's text."""
    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key, max_retries=0)
    agent = Agent(name="Greeter", instructions="Reply with a short greeting.",
                  model=OpenAIResponsesModel(MODEL, client), model_settings=ModelSettings(max_tokens=30))

    async def run() -> tuple[str, list[str]]:
        result = Runner.run_streamed(agent, "Hello!")
        kinds = [event.data.type async for event in result.stream_events() if event.type == "raw_response_event"]
        return str(result.final_output), kinds

    final_output, kinds = asyncio.run(run())
    assert final_output.strip()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
