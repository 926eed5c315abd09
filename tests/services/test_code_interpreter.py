"""The code_interpreter tool in-process: a scripted chat model, the real sandbox, store and Files.

The fake model writes the code the user's message holds when the turn forces
the ``python`` function, and otherwise answers with the tool output it read,
so every assertion is about the executor's wiring: steps, outputs, files,
images in the answer, the output fed back, usage, v1 files, attachments.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.assistants import code_interpreter
from hearth.assistants.code_interpreter import CodeInterpreter
from hearth.assistants.protocol import CreateAssistantRequest, CreateMessageRequest, CreateThreadRequest
from hearth.errors import InvalidRequest
from hearth.files.service import FileStorage, open_file_storage, store_file
from hearth.sandbox import Limits, Sandbox
from hearth.settings import Settings
from hearth.store import files as files_repo
from hearth.store.pagination import PageRequest
from tests.services.conftest import CALLER, Hearth
from tests.services.test_assistants import Env, environment

pytestmark = pytest.mark.anyio
CHART = ("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.savefig('chart.png')\n"
         "print(open('values.csv').read().count(','))")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ScriptedChat:
    """Forced ``python`` turns: the last user message is the code. Other turns: repeat the tool output."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def chat(self, request: dict[str, Any], stop: Any = None) -> dict[str, Any]:
        self.requests.append(request)
        messages = request["messages"]
        choice = request.get("tool_choice")
        if isinstance(choice, dict):
            code = [message["content"] for message in messages if message["role"] == "user"][-1]
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{len(self.requests)}", "type": "function",
                "function": {"name": choice["function"]["name"], "arguments": json.dumps({"code": code})}}]}
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": f"The output was: {messages[-1]['content']}"}
            finish = "stop"
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": request["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


@pytest.fixture
async def setup(hearth: Hearth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[
        tuple[Env, FileStorage, ScriptedChat]]:
    scripted = ScriptedChat()
    monkeypatch.setattr(hearth.engine("gpt-4o-mini"), "chat", scripted.chat)
    with environment(hearth, tmp_path) as env:
        storage = await open_file_storage(env.db, Settings(data_dir=tmp_path), hearth.meter)
        sandbox = Sandbox(Limits(wall_seconds=60, cpu_seconds=10), slots=1)
        env.executor.code = CodeInterpreter(env.db, storage, sandbox, hearth.meter)
        try:
            yield env, storage, scripted
        finally:
            if storage.lease is not None:
                storage.lease.release()


async def _upload(storage: FileStorage, name: str, data: bytes) -> str:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    stored = await store_file(storage, CALLER, name, "assistants", chunks())
    return stored.id


def _code_calls(env: Env, run: dict[str, Any]) -> list[dict[str, Any]]:
    return [call for step in env.steps(run) if step["type"] == "tool_calls"
            for call in step["step_details"]["tool_calls"]]


async def test_a_forced_call_runs_in_the_sandbox_and_the_model_reads_its_output(
        setup: tuple[Env, FileStorage, ScriptedChat], hearth: Hearth) -> None:
    env, storage, scripted = setup
    data = await _upload(storage, "values.csv", b"a,b\n1,2\n")
    assistant = env.assistant(tools=[{"type": "code_interpreter"}],
                              tool_resources={"code_interpreter": {"file_ids": [data]}})
    thread = env.thread(CHART)
    run = await env.work(env.start(thread, assistant, tool_choice={"type": "code_interpreter"}))
    assert run["status"] == "completed", run
    assert run["tool_choice"] == {"type": "code_interpreter"}
    steps = env.steps(run)
    assert [step["type"] for step in steps] == ["tool_calls", "message_creation"]
    (call,) = steps[0]["step_details"]["tool_calls"]
    assert call["type"] == "code_interpreter" and call["code_interpreter"]["input"] == CHART
    outputs = call["code_interpreter"]["outputs"]
    assert outputs[0]["type"] == "logs" and outputs[0]["logs"].startswith("2\n")
    (image,) = [output["image"]["file_id"] for output in outputs if output["type"] == "image"]
    # The model saw the tool as the python function, forced, naming the run's file; then read the output.
    first, second = scripted.requests
    assert first["tool_choice"] == {"type": "function", "function": {"name": "python"}}
    assert "values.csv" in first["tools"][0]["function"]["description"]
    # The answering turn reads the code and its output as text, with no tool to call.
    assert "tools" not in second and "tool_choice" not in second
    assert second["messages"][-2]["content"].startswith("I ran this code:\n```python\n" + CHART)
    assert second["messages"][-1]["content"].startswith("The code printed:\n```\n2\n")
    answer = env.messages(thread)[-1]
    assert answer["content"][0]["text"]["value"].startswith("The output was: The code printed:")
    assert answer["content"][1] == {"type": "image_file", "image_file": {"file_id": image}}
    with env.db.session() as session:
        record = files_repo.get_file(session, CALLER.project_id, image)
        assert record is not None and record.purpose == "assistants_output" and record.filename == "chart.png"
    sessions = [event for event in hearth.meter.events if event.kind == "code_interpreter_sessions"]
    assert len(sessions) == 1 and sessions[0].sessions == 1


async def test_failing_code_is_tried_again_then_the_model_must_answer(
        setup: tuple[Env, FileStorage, ScriptedChat]) -> None:
    env, _, scripted = setup
    assistant = env.assistant(tools=[{"type": "code_interpreter"}])
    run = await env.work(env.start(env.thread("raise ValueError('nope')"), assistant))
    assert run["status"] == "completed"
    calls = _code_calls(env, run)
    assert len(calls) == code_interpreter.MAX_CALLS_PER_RUN
    assert all("ValueError: nope" in call["code_interpreter"]["outputs"][0]["logs"] for call in calls)
    assert "tools" not in scripted.requests[-1]


async def test_v1_files_and_v2_attachments_reach_the_sandbox(setup: tuple[Env, FileStorage, ScriptedChat]) -> None:
    env, storage, _ = setup
    first = await _upload(storage, "one.txt", b"1")
    second = await _upload(storage, "two.txt", b"2")
    body = CreateAssistantRequest.model_validate({"model": "gpt-4o-mini", "tools": [{"type": "code_interpreter"}],
                                                  "file_ids": [first]})
    v1_assistant = env.assistants.create_assistant(CALLER, body, "v1")["id"]
    thread = env.assistants.create_thread(CALLER, CreateThreadRequest.model_validate({"messages": [{
        "role": "user", "content": "import os\nprint(sorted(os.listdir('.')))",
        "attachments": [{"file_id": second, "tools": [{"type": "code_interpreter"}]}]}]}), "v2")["id"]
    run = await env.work(env.start(thread, v1_assistant))
    logs = _code_calls(env, run)[0]["code_interpreter"]["outputs"][0]["logs"]
    assert logs == "['one.txt', 'two.txt']"
    message = env.assistants.list_messages(CALLER, thread, PageRequest(limit=1, order="asc"), None, "v2")[0][0]
    assert message["attachments"] == [{"file_id": second, "tools": [{"type": "code_interpreter"}]}]


def test_tool_and_resource_checks(env: Env) -> None:
    with pytest.raises(InvalidRequest) as wrong:
        env.assistant(tools=[{"type": "code_interpreter"}], tool_resources={"code_interpreter": {"ids": []}})
    assert wrong.value.param == "tool_resources.code_interpreter.ids"
    with pytest.raises(InvalidRequest) as named:
        env.start(env.thread("hi"), env.assistant(), tool_choice={"type": "code_interpreter"})
    assert named.value.param == "tool_choice"
    with pytest.raises(InvalidRequest) as missing_file:
        env.assistants.create_message(CALLER, env.thread(), CreateMessageRequest.model_validate({
            "role": "user", "content": "x", "attachments": [{"file_id": "file-nope",
                                                              "tools": [{"type": "code_interpreter"}]}]}), "v2")
    assert missing_file.value.param == "attachments[0]"
    with pytest.raises(InvalidRequest) as clash:
        env.assistant(tools=[{"type": "code_interpreter"}, {"type": "function", "function": {"name": "python"}}])
    assert clash.value.param == "tools[1].function.name"


@pytest.fixture
def env(hearth: Hearth, tmp_path: Path) -> Iterator[Env]:
    with environment(hearth, tmp_path) as built:
        yield built
