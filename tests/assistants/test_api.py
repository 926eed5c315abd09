"""The Assistants API through today's official SDK (v2) and raw HTTP (v1), on the live server's real model.

Every object the server sends is checked against OpenAI's schema for it:
assistants, threads, messages, runs, steps, and each streamed event's data.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import AssistantEventHandler, OpenAI
from openai.types.beta import AssistantStreamEvent

from tests.conftest import LiveServer
from tests.raw_http import Raw
from tests.spec import assert_matches_schema
from tests.storage_backends import new_project_key

# The SDK marks the whole Assistants API deprecated (in favour of Responses); it still serves it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MODEL = "gpt-4o-mini"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
# Which schema each streamed event's data has.
EVENT_SCHEMAS = {"thread.created": "ThreadObject", "thread.run.step.delta": "RunStepDeltaObject",
                 "thread.message.delta": "MessageDeltaObject"}


def event_schema(name: str) -> str:
    if name in EVENT_SCHEMAS:
        return EVENT_SCHEMAS[name]
    if name.startswith("thread.run.step."):
        return "RunStepObject"
    if name.startswith("thread.message."):
        return "MessageObject"
    return "RunObject"


@pytest.fixture(scope="module")
def raw(server: LiveServer) -> Iterator[Raw]:
    client = Raw(server, beta="assistants=v2")
    yield client
    client.http.close()


def text_of(message: Any) -> str:
    return "".join(part.text.value for part in message.content if part.type == "text")


# -- v2 objects ---------------------------------------------------------------------------------


def test_assistants_threads_and_messages_through_the_sdk(client: OpenAI, raw: Raw) -> None:
    made = [client.beta.assistants.create(model=MODEL, name=f"helper {i}", instructions="Be brief.",
                                          tools=[WEATHER], metadata={"n": str(i)}) for i in range(3)]
    assert made[0].tools[0].type == "function" and made[0].metadata == {"n": "0"}
    raw("GET", f"/assistants/{made[0].id}", "AssistantObject")
    page = client.beta.assistants.list(limit=2)
    assert [a.id for a in page.data] == [made[2].id, made[1].id] and page.has_more
    after = client.beta.assistants.list(limit=2, after=made[1].id)
    assert made[0].id in [a.id for a in after.data]
    listed = raw("GET", "/assistants", "ListAssistantsResponse", params={"limit": 2, "order": "asc",
                                                                         "after": made[0].id})
    assert [a["id"] for a in listed["data"]] == [made[1].id, made[2].id]

    updated = client.beta.assistants.update(made[0].id, name="renamed", metadata={"k": "v"})
    assert (updated.name, updated.metadata, updated.instructions) == ("renamed", {"k": "v"}, "Be brief.")
    with pytest.raises(openai.BadRequestError) as too_much:
        client.beta.assistants.update(made[0].id, metadata={f"k{i}": "v" for i in range(17)})
    assert too_much.value.param == "metadata"  # type: ignore[attr-defined]
    interpreter = client.beta.assistants.create(model=MODEL, tools=[{"type": "code_interpreter"}])
    assert [tool.type for tool in interpreter.tools] == ["code_interpreter"]
    with pytest.raises(openai.BadRequestError) as too_many:
        client.beta.assistants.create(model=MODEL, tool_resources={"code_interpreter": {"file_ids": ["f"] * 21}})
    assert too_many.value.param == "tool_resources.code_interpreter.file_ids"  # type: ignore[attr-defined]

    thread = client.beta.threads.create(messages=[{"role": "user", "content": "First."}], metadata={"t": "1"})
    raw("GET", f"/threads/{thread.id}", "ThreadObject")
    second = client.beta.threads.messages.create(thread.id, role="user", content="Second.")
    raw("GET", f"/threads/{thread.id}/messages/{second.id}", "MessageObject")
    messages = client.beta.threads.messages.list(thread.id, order="asc")
    assert [text_of(m) for m in messages.data] == ["First.", "Second."]
    raw("GET", f"/threads/{thread.id}/messages", "ListMessagesResponse")
    assert client.beta.threads.messages.update(second.id, thread_id=thread.id, metadata={"m": "1"}).metadata == {
        "m": "1"}
    assert client.beta.threads.messages.delete(second.id, thread_id=thread.id).deleted
    assert client.beta.threads.update(thread.id, metadata={"t": "2"}).metadata == {"t": "2"}
    assert client.beta.threads.delete(thread.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)
    for assistant in made:
        assert client.beta.assistants.delete(assistant.id).deleted


def test_the_beta_header_chooses_the_version_and_is_required(server: LiveServer, raw: Raw) -> None:
    missing = Raw(server)
    body = missing("GET", "/assistants", status=400)
    assert body["error"]["type"] == "invalid_request_error" and "OpenAI-Beta" in body["error"]["message"]
    assert Raw(server, beta="assistants=v3")("GET", "/assistants", status=400)["error"]["code"] == "invalid_beta"
    missing.http.close()
    # v1's routes are not part of v2.
    assistant = raw("POST", "/assistants", json={"model": MODEL})
    assert raw("GET", f"/assistants/{assistant['id']}/files", status=404)["error"]["code"] == "unknown_url"
    bad = raw.http.post("/threads", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


# -- runs -----------------------------------------------------------------------------------------


def test_create_and_poll_answers_from_the_model(client: OpenAI, raw: Raw) -> None:
    assistant = client.beta.assistants.create(model=MODEL, instructions="Answer in one short sentence.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What colour is the sky?"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   poll_interval_ms=200, metadata={"case": "poll"})
    assert run.status == "completed", run
    assert run.usage is not None and run.usage.completion_tokens > 0 and run.started_at and run.completed_at
    raw("GET", f"/threads/{thread.id}/runs/{run.id}", "RunObject")
    raw("GET", f"/threads/{thread.id}/runs", "ListRunsResponse")
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data
    assert len(reply) == 1 and reply[0].role == "assistant" and text_of(reply[0]).strip()
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)
    assert [(s.type, s.status) for s in steps.data] == [("message_creation", "completed")]
    assert steps.data[0].usage is not None and steps.data[0].usage.total_tokens == run.usage.total_tokens
    raw("GET", f"/threads/{thread.id}/runs/{run.id}/steps", "ListRunStepsResponse",
        params={"include[]": "step_details.tool_calls[*].file_search.results[*].content"})
    step = client.beta.threads.runs.steps.retrieve(steps.data[0].id, thread_id=thread.id, run_id=run.id)
    assert step.step_details.type == "message_creation"
    assert client.beta.threads.runs.update(run.id, thread_id=thread.id, metadata={"k": "v"}).metadata == {"k": "v"}


class Recorder(AssistantEventHandler):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.text = ""
        self.at: dict[str, float] = {}

    def on_event(self, event: AssistantStreamEvent) -> None:
        self.names.append(event.event)
        self.at.setdefault(event.event, time.monotonic())
        assert_matches_schema(event.data.model_dump(mode="json", exclude_unset=True), event_schema(event.event))

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text += delta.value or ""


def test_runs_stream_sends_events_to_an_event_handler_as_the_model_writes(client: OpenAI) -> None:
    assistant = client.beta.assistants.create(model=MODEL, instructions="Answer in two sentences.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Tell me about rivers."}])
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                         event_handler=handler) as stream:
        stream.until_done()
        final = stream.get_final_run()
    assert handler.names[:7] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                                 "thread.run.step.created", "thread.run.step.in_progress",
                                 "thread.message.created", "thread.message.in_progress"]
    assert handler.names[-3:] == ["thread.message.completed", "thread.run.step.completed", "thread.run.completed"]
    assert handler.names.count("thread.message.delta") > 3
    assert handler.at["thread.message.delta"] < handler.at["thread.run.completed"]
    assert final.status == "completed"
    [reply] = client.beta.threads.messages.list(thread.id, run_id=final.id).data
    assert text_of(reply) == handler.text and handler.text.strip()


def test_function_calling_round_trip(client: OpenAI, raw: Raw) -> None:
    assistant = client.beta.assistants.create(model=MODEL, tools=[WEATHER],
                                              instructions="Use the tools to answer.")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    # The small local model rambles after a tool result; 256 tokens (the API's least) bound its answer.
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=200, max_completion_tokens=256,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert run.status == "requires_action", run
    raw("GET", f"/threads/{thread.id}/runs/{run.id}", "RunObject")
    assert run.required_action is not None and run.expires_at is not None
    [call] = run.required_action.submit_tool_outputs.tool_calls
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments)["city"], str)

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, poll_interval_ms=200,
        tool_outputs=[{"tool_call_id": call.id, "output": "Sunny and 21 degrees Celsius."}])
    assert done.status in ("completed", "incomplete"), done
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    assert [step.type for step in steps] == ["tool_calls", "message_creation"]
    assert steps[0].step_details.tool_calls[0].function.output == "Sunny and 21 degrees Celsius."  # type: ignore[union-attr]
    raw("GET", f"/threads/{thread.id}/runs/{run.id}/steps/{steps[0].id}", "RunStepObject")


def test_function_calls_stream_and_their_outputs_stream_the_answer(client: OpenAI) -> None:
    assistant = client.beta.assistants.create(model=MODEL, tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Rome?"}])
    handler = Recorder()
    with client.beta.threads.runs.stream(
            thread_id=thread.id, assistant_id=assistant.id, event_handler=handler, max_completion_tokens=256,
            tool_choice={"type": "function", "function": {"name": "get_weather"}}) as stream:
        stream.until_done()
        waiting = stream.get_final_run()
    assert handler.names[-1] == "thread.run.requires_action" and "thread.run.step.delta" in handler.names
    assert waiting.required_action is not None
    [call] = waiting.required_action.submit_tool_outputs.tool_calls
    assert "city" in json.loads(call.function.arguments)

    after = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
            run_id=waiting.id, thread_id=thread.id, event_handler=after,
            tool_outputs=[{"tool_call_id": call.id, "output": "Rainy, 12 degrees."}]) as stream:
        stream.until_done()
    assert after.names[0] == "thread.run.step.completed"
    assert after.names[-1] in ("thread.run.completed", "thread.run.incomplete")
    assert "thread.message.delta" in after.names and after.text.strip()


def test_cancel_a_run_waiting_for_tool_outputs(client: OpenAI) -> None:
    assistant = client.beta.assistants.create(model=MODEL, tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Weather in Oslo?"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=200,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert run.status == "requires_action"
    assert client.beta.threads.runs.cancel(run.id, thread_id=thread.id).status == "cancelling"
    cancelled = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=200)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)


def test_create_thread_and_run(client: OpenAI) -> None:
    assistant = client.beta.assistants.create(model=MODEL, instructions="Reply with one word.")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "Say hello."}]},
        poll_interval_ms=200)
    assert run.status == "completed"
    assert [m.role for m in client.beta.threads.messages.list(run.thread_id).data] == ["assistant", "user"]


def test_another_project_cannot_see_the_objects(server: LiveServer, client: OpenAI) -> None:
    from hearth.store.db import Database

    db = Database(f"sqlite:///{server.data_dir / 'hearth.db'}")
    other = server.client(api_key=new_project_key(db)[2])
    db.dispose()
    assistant = client.beta.assistants.create(model=MODEL)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Private."}])
    with pytest.raises(openai.NotFoundError):
        other.beta.assistants.retrieve(assistant.id)
    with pytest.raises(openai.NotFoundError):
        other.beta.threads.retrieve(thread.id)
    with pytest.raises(openai.NotFoundError):
        other.beta.threads.messages.list(thread.id)
    with pytest.raises(openai.NotFoundError):
        other.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    own = other.beta.threads.create()
    with pytest.raises(openai.NotFoundError) as foreign:
        other.beta.threads.runs.create(thread_id=own.id, assistant_id=assistant.id)
    assert foreign.value.param == "assistant_id"  # type: ignore[attr-defined]
    assert assistant.id not in [a.id for a in other.beta.assistants.list().data]


# -- v1 ---------------------------------------------------------------------------------------------


def test_a_v1_flow_with_raw_http(client: OpenAI, server: LiveServer) -> None:
    v1 = Raw(server, beta="assistants=v1")
    notes = client.files.create(file=("notes.txt", io.BytesIO(b"Rivers flow to the sea.")), purpose="assistants")
    extra = client.files.create(file=("more.txt", io.BytesIO(b"More notes.")), purpose="assistants")

    assistant = v1("POST", "/assistants", json={"model": MODEL, "name": "v1 helper", "file_ids": [notes.id],
                                                "instructions": "Answer in one short sentence."})
    assert assistant["file_ids"] == [notes.id] and "tool_resources" not in assistant
    assert v1("POST", "/assistants", json={"model": MODEL, "tools": [{"type": "file_search"}]},
              status=400)["error"]["param"] == "tools[0].type"  # v2's tool; v1 has retrieval
    attached = v1("POST", f"/assistants/{assistant['id']}/files", json={"file_id": extra.id})
    assert attached == {"id": extra.id, "object": "assistant.file", "created_at": attached["created_at"],
                        "assistant_id": assistant["id"]}
    files = v1("GET", f"/assistants/{assistant['id']}/files", params={"order": "asc"})
    assert [f["id"] for f in files["data"]] == [notes.id, extra.id]
    assert v1("GET", f"/assistants/{assistant['id']}")["file_ids"] == [notes.id, extra.id]
    assert v1("DELETE", f"/assistants/{assistant['id']}/files/{extra.id}")["deleted"]
    assert v1("GET", f"/assistants/{assistant['id']}/files/{extra.id}", status=404)

    thread = v1("POST", "/threads", json={"messages": [
        {"role": "user", "content": "Where do rivers flow?", "file_ids": [notes.id]}]})
    assert set(thread) == {"id", "object", "created_at", "metadata"}
    [message] = v1("GET", f"/threads/{thread['id']}/messages")["data"]
    assert message["file_ids"] == [notes.id] and "attachments" not in message
    [message_file] = v1("GET", f"/threads/{thread['id']}/messages/{message['id']}/files")["data"]
    assert message_file == {"id": notes.id, "object": "thread.message.file", "created_at": message["created_at"],
                            "message_id": message["id"]}
    assert v1("GET", f"/threads/{thread['id']}/messages/{message['id']}/files/{notes.id}") == message_file
    assert v1("POST", f"/threads/{thread['id']}/messages", json={"role": "user", "content": "x",
                                                                  "attachments": []}, status=400)

    run = v1("POST", f"/threads/{thread['id']}/runs", json={"assistant_id": assistant["id"]})
    assert run["file_ids"] == [notes.id] and "parallel_tool_calls" not in run
    deadline = time.monotonic() + 300
    while run["status"] in ("queued", "in_progress"):
        assert time.monotonic() < deadline, run
        time.sleep(0.3)
        run = v1("GET", f"/threads/{thread['id']}/runs/{run['id']}")
    assert run["status"] == "completed", run
    [step] = v1("GET", f"/threads/{thread['id']}/runs/{run['id']}/steps")["data"]
    assert step["type"] == "message_creation" and step["usage"]["total_tokens"] > 0
    reply = v1("GET", f"/threads/{thread['id']}/messages")["data"][0]
    assert reply["role"] == "assistant" and reply["file_ids"] == [] and reply["content"][0]["text"]["value"].strip()
    assert v1("DELETE", f"/threads/{thread['id']}/messages/{reply['id']}", status=404)
    v1.http.close()


def test_bad_input_gets_a_clear_4xx_never_a_500(raw: Raw) -> None:
    assistant = raw("POST", "/assistants", json={"model": MODEL})
    thread = raw("POST", "/threads", json={"messages": [{"role": "user", "content": "hi"}]})
    cases: list[tuple[str, str, dict[str, Any], int, str | None]] = [
        ("POST", "/assistants", {"json": {"model": 5}}, 400, "model"),
        ("POST", "/assistants", {"json": {"model": MODEL, "temperature": "hot"}}, 400, "temperature"),
        ("POST", "/assistants", {"json": {"model": MODEL, "nmae": "x"}}, 400, "nmae"),
        ("POST", "/assistants", {"json": {"model": "no-such-model"}}, 404, "model"),
        ("POST", "/assistants", {"json": {"model": MODEL, "tools": [{"type": "bogus"}]}}, 400, None),
        ("POST", "/assistants", {"json": {"model": MODEL, "file_ids": ["file-x"]}}, 400, "file_ids"),
        ("GET", "/assistants", {"params": {"limit": 0}}, 400, "limit"),
        ("GET", "/assistants", {"params": {"after": "asst_nope"}}, 400, "after"),
        ("GET", "/assistants/asst_nope", {}, 404, None),
        ("GET", "/threads/thread_nope", {}, 404, None),
        ("POST", f"/threads/{thread['id']}/messages", {"json": {"role": "system", "content": "x"}}, 400, "role"),
        ("POST", f"/threads/{thread['id']}/messages", {"json": {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x"}}]}}, 400, "content[0]"),
        ("GET", f"/threads/{thread['id']}/messages/msg_nope", {}, 404, None),
        ("POST", f"/threads/{thread['id']}/runs", {"json": {}}, 400, "assistant_id"),
        ("POST", f"/threads/{thread['id']}/runs", {"json": {"assistant_id": "asst_nope"}}, 404, "assistant_id"),
        ("POST", f"/threads/{thread['id']}/runs", {"json": {"assistant_id": assistant["id"],
                                                             "max_completion_tokens": 10}}, 400,
         "max_completion_tokens"),
        ("POST", f"/threads/{thread['id']}/runs", {"json": {"assistant_id": assistant["id"], "tool_choice": {
            "type": "function", "function": {"name": "missing"}}}}, 400, "tool_choice"),
        ("GET", f"/threads/{thread['id']}/runs/run_nope", {}, 404, None),
        ("POST", f"/threads/{thread['id']}/runs/run_nope/cancel", {}, 404, None),
        ("POST", f"/threads/{thread['id']}/runs/run_nope/submit_tool_outputs", {"json": {"tool_outputs": []}}, 404,
         None),
        ("GET", f"/threads/{thread['id']}/runs/run_nope/steps", {}, 404, None),
    ]
    for method, path, kwargs, status, param in cases:
        body = raw(method, path, status=status, **kwargs)
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        if param is not None:
            assert body["error"]["param"] == param, (path, kwargs, body)
    garbled = raw.http.post(f"/threads/{thread['id']}/runs", content=b'{"assistant_id": ',
                            headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400
