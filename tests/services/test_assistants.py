"""Assistants in-process over the fake chat engine: objects, runs as jobs, streaming, function calls,
cancel, expiry, recovery after a dead worker, project isolation.

A real SQLite database, job queue and worker run every run; only the model
is a fake (it echoes the last user message word by word, and answers a named
tool choice with one call to that function).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from hearth.assistants.execution import ATTEMPTS, EXPIRE, RUN, RunExecutor
from hearth.assistants.protocol import (
    CreateAssistantFileRequest,
    CreateAssistantRequest,
    CreateMessageRequest,
    CreateRunRequest,
    CreateThreadAndRunRequest,
    CreateThreadRequest,
    ModifyAssistantRequest,
    ModifyMetadataRequest,
    SubmitToolOutputsRequest,
)
from hearth.assistants.runs import RunService
from hearth.assistants.service import AssistantsService
from hearth.caller import Caller
from hearth.chat.service import ChatService
from hearth.errors import InvalidRequest, NotFound, invalid_request
from hearth.jobs import JobQueue, Worker
from hearth.settings import Settings
from hearth.store.db import Database
from hearth.store.ids import now
from hearth.store.pagination import PageRequest
from hearth.store.tables import File, Job, Organization, Project, RunRow, RunStepRow, ThreadMessageRow
from tests.services.conftest import CALLER, Hearth

pytestmark = pytest.mark.anyio
OTHER = Caller(organization_id=CALLER.organization_id, project_id="proj_other")
FINAL = ("completed", "failed", "cancelled", "expired", "incomplete")
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"words": {"type": "array"}}}}}


@dataclass
class Env:
    db: Database
    queue: JobQueue
    assistants: AssistantsService
    runs: RunService
    executor: RunExecutor

    def assistant(self, **fields: Any) -> str:
        body = CreateAssistantRequest.model_validate({"model": "gpt-4o-mini", **fields})
        return self.assistants.create_assistant(CALLER, body, "v2")["id"]

    def thread(self, *said: str) -> str:
        body = CreateThreadRequest.model_validate({"messages": [{"role": "user", "content": text} for text in said]})
        return self.assistants.create_thread(CALLER, body, "v2")["id"]

    def start(self, thread_id: str, assistant_id: str, **fields: Any) -> dict[str, Any]:
        body = CreateRunRequest.model_validate({"assistant_id": assistant_id, **fields})
        return self.runs.create(CALLER, thread_id, body, "v2")

    def retrieve(self, run: dict[str, Any]) -> dict[str, Any]:
        return self.runs.retrieve(CALLER, run["thread_id"], run["id"], "v2")

    async def work(self, run: dict[str, Any], until: Callable[[dict[str, Any]], bool] | None = None,
                   lease_seconds: float = 30.0) -> dict[str, Any]:
        """Run a worker until the run rests (or ``until`` holds) and no job is left to run."""
        def rested(current: dict[str, Any]) -> bool:
            return current["status"] in (*FINAL, "requires_action") and not self.due_jobs()

        until = until or rested
        worker = Worker(self.queue, self.executor.handlers(), concurrency=2, poll_interval=0.01,
                        lease_seconds=lease_seconds)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            async with asyncio.timeout(20):
                while not until(current := self.retrieve(run)):
                    await asyncio.sleep(0.01)
        finally:
            stop.set()
            await task
        return current

    def due_jobs(self) -> list[Job]:
        with self.db.session() as session:
            return list(session.scalars(select(Job).where(Job.status.in_(["queued", "running"]),
                                                          Job.run_at <= time.time())))

    def messages(self, thread_id: str, caller: Caller = CALLER) -> list[dict[str, Any]]:
        items, _ = self.assistants.list_messages(caller, thread_id, PageRequest(limit=100, order="asc"), None, "v2")
        return items

    def steps(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        items, _ = self.runs.list_steps(CALLER, run["thread_id"], run["id"], PageRequest(limit=100, order="asc"),
                                        [], "v2")
        return items


@contextmanager
def environment(hearth: Hearth, root: Path, **settings: Any) -> Iterator[Env]:
    config = Settings(data_dir=root, database_url=f"sqlite:///{root / 'hearth.db'}", **settings)
    db = Database(config.resolved_database_url)
    db.migrate()
    with db.session() as session:
        session.add(Organization(id=CALLER.organization_id, name="Test", created_at=now()))
        for project_id in (CALLER.project_id, OTHER.project_id):
            session.add(Project(id=project_id, organization_id=CALLER.organization_id, name=project_id,
                                status="active", created_at=now()))
    queue = JobQueue(db)
    executor = RunExecutor(db, queue, ChatService(hearth.models, hearth.meter), config)
    try:
        yield Env(db, queue, AssistantsService(db, hearth.models),
                  RunService(db, queue, hearth.models, executor, config), executor)
    finally:
        db.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def env(hearth: Hearth, tmp_path: Path) -> Iterator[Env]:
    with environment(hearth, tmp_path) as built:
        yield built


def text_of(message: dict[str, Any]) -> str:
    return "".join(part["text"]["value"] for part in message["content"])


# -- objects --------------------------------------------------------------------------------------


def test_assistants_have_each_versions_shape_and_list_in_order(env: Env) -> None:
    ids = [env.assistant(name=f"a{index}", metadata={"n": str(index)}) for index in range(3)]
    v2 = env.assistants.retrieve_assistant(CALLER, ids[0], "v2")
    v1 = env.assistants.retrieve_assistant(CALLER, ids[0], "v1")
    assert "tool_resources" in v2 and "file_ids" not in v2
    assert v1["file_ids"] == [] and "tool_resources" not in v1
    assert (v2["object"], v2["name"], v2["metadata"], v2["tools"]) == ("assistant", "a0", {"n": "0"}, [])

    newest_first, has_more = env.assistants.list_assistants(CALLER, PageRequest(limit=2), "v2")
    assert [item["id"] for item in newest_first] == ids[::-1][:2] and has_more
    rest, has_more = env.assistants.list_assistants(CALLER, PageRequest(limit=2, after=ids[1]), "v2")
    assert [item["id"] for item in rest] == [ids[0]] and not has_more
    before, _ = env.assistants.list_assistants(CALLER, PageRequest(limit=5, order="asc", before=ids[2]), "v2")
    assert [item["id"] for item in before] == ids[:2]

    modified = env.assistants.modify_assistant(
        CALLER, ids[0], ModifyAssistantRequest.model_validate({"instructions": "Be brief.", "metadata": {}}), "v2")
    assert (modified["instructions"], modified["metadata"], modified["name"]) == ("Be brief.", {}, "a0")
    assert env.assistants.delete_assistant(CALLER, ids[0]) == {"id": ids[0], "object": "assistant.deleted",
                                                                "deleted": True}
    with pytest.raises(NotFound):
        env.assistants.retrieve_assistant(CALLER, ids[0], "v2")


def add_file(env: Env, file_id: str, caller: Caller = CALLER) -> str:
    with env.db.session() as session:
        session.add(File(id=file_id, project_id=caller.project_id, filename=f"{file_id}.txt", purpose="assistants",
                         bytes=5, status="processed", blob_key=file_id, writer="test", created_at=now()))
    return file_id


async def test_v1_files_hang_off_assistants_and_messages(env: Env) -> None:
    notes, extra = add_file(env, "file-notes"), add_file(env, "file-extra")
    add_file(env, "file-theirs", OTHER)
    v1 = CreateAssistantRequest.model_validate({"model": "gpt-4o-mini", "file_ids": [notes, notes]})
    assistant = env.assistants.create_assistant(CALLER, v1, "v1")
    assert assistant["file_ids"] == [notes]
    attached = env.assistants.create_assistant_file(CALLER, assistant["id"], CreateAssistantFileRequest(file_id=extra))
    assert attached == {"id": extra, "object": "assistant.file", "created_at": attached["created_at"],
                        "assistant_id": assistant["id"]}
    files, _ = env.assistants.list_assistant_files(CALLER, assistant["id"], PageRequest(limit=20, order="asc"))
    assert [f["id"] for f in files] == [notes, extra]
    with pytest.raises(InvalidRequest) as foreign:
        env.assistants.create_assistant_file(CALLER, assistant["id"], CreateAssistantFileRequest(file_id="file-theirs"))
    assert foreign.value.param == "file_id[0]"
    env.assistants.delete_assistant_file(CALLER, assistant["id"], extra)
    assert env.assistants.retrieve_assistant(CALLER, assistant["id"], "v1")["file_ids"] == [notes]
    with pytest.raises(NotFound):
        env.assistants.retrieve_assistant_file(CALLER, assistant["id"], extra)

    thread = env.assistants.create_thread(CALLER, CreateThreadRequest.model_validate(
        {"messages": [{"role": "user", "content": "read this", "file_ids": [notes]}]}), "v1")
    assert set(thread) == {"id", "object", "created_at", "metadata"}
    [message] = env.assistants.list_messages(CALLER, thread["id"], PageRequest(limit=20), None, "v1")[0]
    assert message["file_ids"] == [notes] and "attachments" not in message
    [listed] = env.assistants.list_message_files(CALLER, thread["id"], message["id"], PageRequest(limit=20))[0]
    assert listed == env.assistants.retrieve_message_file(CALLER, thread["id"], message["id"], notes)
    assert listed == {"id": notes, "object": "thread.message.file", "created_at": message["created_at"],
                      "message_id": message["id"]}
    with pytest.raises(InvalidRequest) as v2_field:
        env.assistants.create_message(CALLER, thread["id"], CreateMessageRequest.model_validate(
            {"role": "user", "content": "x", "attachments": []}), "v1")
    assert v2_field.value.param == "attachments"
    with pytest.raises(InvalidRequest) as parts:
        env.assistants.create_message(CALLER, thread["id"], CreateMessageRequest.model_validate(
            {"role": "user", "content": [{"type": "text", "text": "x"}]}), "v1")
    assert parts.value.param == "content"

    run = env.runs.create(CALLER, thread["id"], CreateRunRequest(assistant_id=assistant["id"]), "v1")
    assert run["file_ids"] == [notes] and "parallel_tool_calls" not in run
    done = await env.work(run)
    assert done["status"] == "completed"
    assert env.runs.retrieve(CALLER, thread["id"], run["id"], "v1")["file_ids"] == [notes]


def test_metadata_limits_are_the_apis() -> None:
    with pytest.raises(ValidationError) as too_many:
        CreateAssistantRequest.model_validate({"model": "m", "metadata": {f"k{i}": "v" for i in range(17)}})
    assert invalid_request(too_many.value.errors()).param == "metadata"
    with pytest.raises(ValidationError):
        CreateAssistantRequest.model_validate({"model": "m", "metadata": {"k" * 65: "v"}})
    with pytest.raises(ValidationError):
        CreateAssistantRequest.model_validate({"model": "m", "metadata": {"k": "v" * 513}})
    CreateAssistantRequest.model_validate({"model": "m", "metadata": {f"k{i}": "v" * 512 for i in range(16)}})


def test_tools_that_need_later_issues_are_refused_by_name(env: Env) -> None:
    for tool, version in (("retrieval", "v2"), ("file_search", "v1")):  # each version has its own
        body = CreateAssistantRequest.model_validate({"model": "gpt-4o-mini", "tools": [WEATHER, {"type": tool}]})
        with pytest.raises(InvalidRequest) as refused:
            env.assistants.create_assistant(CALLER, body, version)  # type: ignore[arg-type]
        assert refused.value.param == "tools[1].type" and tool in refused.value.message
    with pytest.raises(InvalidRequest) as v1_field:
        env.assistants.create_assistant(
            CALLER, CreateAssistantRequest.model_validate({"model": "gpt-4o-mini", "file_ids": []}), "v2")
    assert v1_field.value.param == "file_ids"
    with pytest.raises(InvalidRequest) as resources:
        env.assistants.create_assistant(CALLER, CreateAssistantRequest.model_validate(
            {"model": "gpt-4o-mini", "tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}}}), "v2")
    assert resources.value.param == "tool_resources.file_search"
    with pytest.raises(NotFound):
        env.assistants.create_assistant(CALLER, CreateAssistantRequest.model_validate({"model": "nope"}), "v2")


def test_another_project_sees_none_of_the_objects(env: Env) -> None:
    assistant_id, thread_id = env.assistant(), env.thread("hello there")
    message_id = env.messages(thread_id)[0]["id"]
    run = env.start(thread_id, assistant_id)
    with pytest.raises(NotFound):
        env.assistants.retrieve_assistant(OTHER, assistant_id, "v2")
    with pytest.raises(NotFound):
        env.assistants.retrieve_thread(OTHER, thread_id, "v2")
    with pytest.raises(NotFound):
        env.assistants.retrieve_message(OTHER, thread_id, message_id, "v2")
    with pytest.raises(NotFound):
        env.runs.retrieve(OTHER, thread_id, run["id"], "v2")
    with pytest.raises(NotFound):
        env.runs.create(OTHER, thread_id, CreateRunRequest(assistant_id=assistant_id), "v2")
    other_thread = env.assistants.create_thread(OTHER, None, "v2")["id"]
    with pytest.raises(NotFound) as foreign_assistant:
        env.runs.create(OTHER, other_thread, CreateRunRequest(assistant_id=assistant_id), "v2")
    assert foreign_assistant.value.param == "assistant_id"
    assert env.assistants.list_assistants(OTHER, PageRequest(limit=20), "v2") == ([], False)


# -- runs ---------------------------------------------------------------------------------------------


async def test_a_run_answers_through_its_job_with_steps_and_metered_usage(env: Env, hearth: Hearth) -> None:
    assistant_id = env.assistant(instructions="Repeat after me.")
    thread_id = env.thread("hello assistant world")
    run = env.start(thread_id, assistant_id, metadata={"case": "job"})
    assert (run["status"], run["usage"], run["metadata"]) == ("queued", None, {"case": "job"})

    done = await env.work(run)
    assert done["status"] == "completed" and done["started_at"] and done["completed_at"]
    modified = env.runs.modify(CALLER, thread_id, run["id"], ModifyMetadataRequest(metadata={"k": "v"}), "v2")
    assert modified["metadata"] == {"k": "v"} and modified["status"] == "completed"
    assert done["required_action"] is None and done["last_error"] is None and done["expires_at"] is None
    messages = env.messages(thread_id)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert text_of(messages[1]) == "hello assistant world"
    assert (messages[1]["run_id"], messages[1]["assistant_id"], messages[1]["status"]) == (
        run["id"], assistant_id, "completed")
    [step] = env.steps(run)
    assert step["type"] == "message_creation" and step["status"] == "completed"
    assert step["step_details"]["message_creation"]["message_id"] == messages[1]["id"]
    assert step["usage"] == done["usage"] and done["usage"]["completion_tokens"] == 4
    request = hearth.engine("gpt-4o-mini").requests[-1]
    assert request["messages"][0] == {"role": "system", "content": "Repeat after me."}
    [event] = hearth.meter.events
    assert (event.endpoint, event.batch, event.output_tokens) == ("/v1/threads/runs", False, 4)
    filtered, _ = env.assistants.list_messages(CALLER, thread_id, PageRequest(limit=20), run["id"], "v2")
    assert [m["id"] for m in filtered] == [messages[1]["id"]]


async def test_run_options_reach_the_chat_request(env: Env, hearth: Hearth) -> None:
    assistant_id = env.assistant(instructions="Base.", temperature=0.5, response_format={"type": "json_object"})
    thread_id = env.thread("first words")
    with pytest.raises(NotFound):
        env.start(thread_id, assistant_id, model="no-such-model")
    done = await env.work(env.start(
        thread_id, assistant_id, additional_instructions="More.", temperature=0.2, top_p=0.9,
        additional_messages=[{"role": "user", "content": "second words"}]))
    assert done["status"] == "completed" and done["instructions"] == "Base.\n\nMore."
    assert (done["temperature"], done["top_p"], done["response_format"]) == (0.2, 0.9, {"type": "json_object"})
    request = hearth.engine("gpt-4o-mini").requests[-1]
    assert request["messages"] == [{"role": "system", "content": "Base.\n\nMore."},
                                   {"role": "user", "content": "first words"},
                                   {"role": "user", "content": "second words"}]
    assert (request["temperature"], request["top_p"], request["response_format"]) == (
        0.2, 0.9, {"type": "json_object"})
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    done = await env.work(env.start(thread_id, assistant_id, response_format=schema, instructions="Other."))
    assert hearth.engine("gpt-4o-mini").requests[-1]["response_format"]["type"] == "json_schema"
    assert hearth.engine("gpt-4o-mini").requests[-1]["messages"][0]["content"] == "Other."


async def test_a_thread_with_an_active_run_takes_no_more(env: Env) -> None:
    assistant_id, thread_id = env.assistant(), env.thread("one two")
    env.start(thread_id, assistant_id)
    with pytest.raises(InvalidRequest, match="already has an active run"):
        env.start(thread_id, assistant_id)
    with pytest.raises(InvalidRequest, match="already has an active run"):
        env.assistants.create_message(CALLER, thread_id, CreateMessageRequest(role="user", content="x"), "v2")


async def test_function_calls_wait_for_outputs_then_continue(env: Env, hearth: Hearth) -> None:
    assistant_id = env.assistant(tools=[WEATHER])
    thread_id = env.thread("weather in paris")
    run = env.start(thread_id, assistant_id, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    waiting = await env.work(run)
    assert waiting["status"] == "requires_action" and waiting["expires_at"] > now()
    [call] = waiting["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"words": ["weather", "in", "paris"]}
    [step] = env.steps(run)
    assert (step["type"], step["status"]) == ("tool_calls", "in_progress")

    with pytest.raises(InvalidRequest):
        env.runs.submit_tool_outputs(CALLER, thread_id, run["id"], SubmitToolOutputsRequest.model_validate(
            {"tool_outputs": [{"tool_call_id": "call_wrong", "output": "x"}]}), "v2")
    queued = env.runs.submit_tool_outputs(CALLER, thread_id, run["id"], SubmitToolOutputsRequest.model_validate(
        {"tool_outputs": [{"tool_call_id": call["id"], "output": "sunny"}]}), "v2")
    assert queued["status"] == "queued" and queued["required_action"] is None
    done = await env.work(run)
    assert done["status"] == "completed"
    tool_step, message_step = env.steps(run)
    assert tool_step["status"] == "completed" and tool_step["step_details"]["tool_calls"][0]["function"][
        "output"] == "sunny"
    assert message_step["type"] == "message_creation"
    sent = hearth.engine("gpt-4o-mini").requests[-1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call["id"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    # The named tool choice forced the first turn only; the turn after the outputs is the model's.
    assert hearth.engine("gpt-4o-mini").requests[-1]["tool_choice"] == "auto"
    assert done["usage"]["total_tokens"] == tool_step["usage"]["total_tokens"] + message_step["usage"]["total_tokens"]


async def test_max_completion_tokens_leaves_the_run_incomplete(env: Env, hearth: Hearth) -> None:
    hearth.engine("gpt-4o-mini").context_length = 4096
    assistant_id, thread_id = env.assistant(), env.thread(" ".join(["word"] * 300))
    done = await env.work(env.start(thread_id, assistant_id, max_completion_tokens=256))
    assert done["status"] == "incomplete" and done["incomplete_details"] == {"reason": "max_completion_tokens"}
    reply = env.messages(thread_id)[-1]
    assert reply["status"] == "incomplete" and reply["incomplete_details"] == {"reason": "max_tokens"}
    assert len(text_of(reply).split()) == 256


async def test_max_prompt_tokens_truncates_or_leaves_the_run_incomplete(env: Env, hearth: Hearth) -> None:
    hearth.engine("gpt-4o-mini").context_length = 4096
    assistant_id = env.assistant()
    thread_id = env.thread(" ".join(["old"] * 300), "new words here")
    done = await env.work(env.start(thread_id, assistant_id, max_prompt_tokens=256))
    assert done["status"] == "completed"
    assert [m["content"] for m in hearth.engine("gpt-4o-mini").requests[-1]["messages"]] == ["new words here"]

    thread_id = env.thread(" ".join(["old"] * 300), "new words here")
    done = await env.work(env.start(thread_id, assistant_id, max_prompt_tokens=256, truncation_strategy={
        "type": "last_messages", "last_messages": 2}))
    assert done["status"] == "incomplete" and done["incomplete_details"] == {"reason": "max_prompt_tokens"}
    assert [m["role"] for m in env.messages(thread_id)] == ["user", "user"]


async def test_a_prompt_too_long_fails_the_run_with_last_error(env: Env) -> None:
    assistant_id = env.assistant()
    thread_id = env.thread(" ".join(["word"] * 100))
    done = await env.work(env.start(thread_id, assistant_id, truncation_strategy={"type": "last_messages",
                                                                                  "last_messages": 1}))
    assert done["status"] == "failed" and done["failed_at"]
    assert done["last_error"]["code"] == "invalid_prompt" and "context" in done["last_error"]["message"]


async def test_auto_truncation_drops_the_oldest_messages_that_do_not_fit(env: Env, hearth: Hearth) -> None:
    assistant_id = env.assistant()
    thread_id = env.thread(" ".join(["old"] * 70), "new words here")
    done = await env.work(env.start(thread_id, assistant_id))
    assert done["status"] == "completed"
    assert [m["content"] for m in hearth.engine("gpt-4o-mini").requests[-1]["messages"]] == ["new words here"]


# -- streaming --------------------------------------------------------------------------------------


async def test_a_streamed_run_sends_the_v2_events_in_order_as_it_persists_them(env: Env) -> None:
    assistant_id = env.assistant()
    thread_id = env.thread("stream these four words")
    events = await env.runs.stream(CALLER, thread_id, CreateRunRequest(assistant_id=assistant_id, stream=True), "v2")
    seen = [(name, data) async for name, data in events]
    names = [name for name, _ in seen]
    assert names == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                     "thread.run.step.created", "thread.run.step.in_progress",
                     "thread.message.created", "thread.message.in_progress",
                     *["thread.message.delta"] * 4,
                     "thread.message.completed", "thread.run.step.completed", "thread.run.completed"]
    deltas = "".join(data["delta"]["content"][0]["text"]["value"] for name, data in seen
                     if name == "thread.message.delta")
    assert deltas == "stream these four words"
    final = seen[-1][1]
    assert env.retrieve(final) == final
    assert text_of(env.messages(thread_id)[-1]) == deltas


async def test_a_stream_whose_client_leaves_is_finished_by_a_job(env: Env) -> None:
    assistant_id = env.assistant()
    thread_id = env.thread("finish me in the background")
    events = await env.runs.stream(CALLER, thread_id, CreateRunRequest(assistant_id=assistant_id, stream=True), "v2")
    async for name, _ in events:
        if name == "thread.message.delta":
            break
    await events.aclose()  # type: ignore[attr-defined]
    run = env.runs.list_runs(CALLER, thread_id, PageRequest(limit=1), "v2")[0][0]
    assert run["status"] == "in_progress"
    done = await env.work(run)
    assert done["status"] == "completed"
    assert [text_of(m) for m in env.messages(thread_id)] == ["finish me in the background"] * 2


async def test_create_thread_and_run_streams_the_thread_first(env: Env) -> None:
    assistant_id = env.assistant()
    body = CreateThreadAndRunRequest.model_validate(
        {"assistant_id": assistant_id, "stream": True, "thread": {"messages": [{"role": "user", "content": "hi"}]}})
    names = [name async for name, _ in await env.runs.stream_thread_and_run(CALLER, body, "v2")]
    assert names[:3] == ["thread.created", "thread.run.created", "thread.run.queued"]
    assert names[-1] == "thread.run.completed"


# -- cancel, expiry, recovery --------------------------------------------------------------------------


async def test_cancel_moves_through_cancelling_to_cancelled(env: Env) -> None:
    assistant_id = env.assistant(tools=[WEATHER])
    thread_id = env.thread("cancel me")
    run = env.start(thread_id, assistant_id)
    cancelling = env.runs.cancel(CALLER, thread_id, run["id"], "v2")
    assert cancelling["status"] == "cancelling"
    done = await env.work(run)
    assert done["status"] == "cancelled" and done["cancelled_at"]
    with pytest.raises(InvalidRequest, match="Cannot cancel"):
        env.runs.cancel(CALLER, thread_id, run["id"], "v2")

    waiting = await env.work(env.start(thread_id, assistant_id,
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    assert waiting["status"] == "requires_action"
    env.runs.cancel(CALLER, thread_id, waiting["id"], "v2")
    done = await env.work(waiting)
    assert done["status"] == "cancelled"
    assert [step["status"] for step in env.steps(waiting)] == ["cancelled"]


async def test_a_streamed_run_cancelled_before_it_starts_ends_its_stream_cancelled(env: Env) -> None:
    assistant_id, thread_id = env.assistant(), env.thread("never said")
    events = await env.runs.stream(CALLER, thread_id, CreateRunRequest(assistant_id=assistant_id, stream=True), "v2")
    run = env.runs.list_runs(CALLER, thread_id, PageRequest(limit=1), "v2")[0][0]
    assert env.runs.cancel(CALLER, thread_id, run["id"], "v2")["status"] == "cancelling"
    seen = [(name, data["status"]) async for name, data in events]
    assert seen == [("thread.run.created", "queued"), ("thread.run.queued", "queued"),
                    ("thread.run.cancelled", "cancelled")]
    assert [m["role"] for m in env.messages(thread_id)] == ["user"]


async def test_requires_action_expires_when_its_window_closes(hearth: Hearth, tmp_path: Path) -> None:
    with environment(hearth, tmp_path, assistants_requires_action_seconds=2) as env:
        assistant_id, thread_id = env.assistant(tools=[WEATHER]), env.thread("expire me")
        run = env.start(thread_id, assistant_id, tool_choice={"type": "function", "function": {"name": "get_weather"}})
        waiting = await env.work(run)
        assert waiting["status"] == "requires_action"
        with env.db.session() as session:
            expire_job = session.scalar(select(Job).where(Job.kind == EXPIRE))
        assert expire_job is not None and expire_job.run_at == waiting["expires_at"]
        done = await env.work(run, until=lambda current: current["status"] == "expired")
        assert done["required_action"] is None
        assert [step["status"] for step in env.steps(run)] == ["expired"]
        with pytest.raises(InvalidRequest):
            env.runs.submit_tool_outputs(CALLER, thread_id, run["id"], SubmitToolOutputsRequest(tool_outputs=[]), "v2")


async def test_a_run_whose_worker_died_mid_turn_is_resumed(env: Env) -> None:
    assistant_id, thread_id = env.assistant(), env.thread("survive the crash")
    run = env.start(thread_id, assistant_id)
    # A worker claims the run's job, starts the turn, writes half a message and dies.
    claimed = env.queue.claim([RUN], "dead-worker", lease_seconds=0.05)
    assert claimed is not None
    with env.db.session() as session:
        session.execute(update(RunRow).where(RunRow.id == run["id"]).values(
            status="in_progress", started_at=now(), driver=f"job:{claimed.id}", heartbeat_at=time.time()))
        session.add(ThreadMessageRow(id="msg_00000000000001half", thread_id=thread_id, project_id=CALLER.project_id,
                                     created_at=now(), role="assistant", content=[], status="in_progress",
                                     run_id=run["id"], attachments=[], file_ids=[]))
        session.add(RunStepRow(id="step_00000000000001half", run_id=run["id"], thread_id=thread_id,
                               assistant_id=assistant_id, project_id=CALLER.project_id, created_at=now(),
                               type="message_creation", status="in_progress", step_details={}))
    await asyncio.sleep(0.1)
    done = await env.work(run)
    assert done["status"] == "completed"
    assert [text_of(m) for m in env.messages(thread_id)] == ["survive the crash"] * 2
    assert [step["status"] for step in env.steps(run)] == ["completed"]


async def test_a_run_interrupted_too_often_fails_with_a_clear_error(env: Env) -> None:
    assistant_id, thread_id = env.assistant(), env.thread("never finishes")
    run = env.start(thread_id, assistant_id)
    with env.db.session() as session:
        session.execute(update(Job).where(Job.kind == RUN).values(attempts=ATTEMPTS - 1))
    done = await env.work(run)
    assert done["status"] == "failed"
    assert done["last_error"]["code"] == "server_error" and "interrupted" in done["last_error"]["message"]


async def test_a_streamed_run_whose_server_died_is_taken_over_by_its_job(hearth: Hearth, tmp_path: Path) -> None:
    with environment(hearth, tmp_path, job_lease_seconds=0.2) as env:
        assistant_id, thread_id = env.assistant(), env.thread("orphaned stream")
        # The request that would drive it never does (its process died right after creating it).
        run = env.runs.create(CALLER, thread_id, CreateRunRequest(assistant_id=assistant_id), "v2",
                              driver="stream:gone")
        done = await env.work(run, lease_seconds=0.2)
        assert done["status"] == "completed"
