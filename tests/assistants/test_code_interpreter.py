"""The code_interpreter tool through the official SDK on the live server's real chat model.

The model writes the Python (forced by ``tool_choice: code_interpreter``, at
temperature 0), the sandbox runs it, and the run's steps, messages and files
are checked against OpenAI's schemas. The assertions look at what the sandbox
printed: values the model cannot guess (a SHA-256, a CSV's mean), so they
pass only if the code really ran.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.conftest import LiveServer
from tests.spec import assert_matches_schema

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
MODEL = "gpt-4o-mini"
INSTRUCTIONS = "You are a data assistant. Answer by writing Python code and running it with the python tool."
FORCED = {"type": "code_interpreter"}
CSV = "city,value\nOslo,12.5\nLima,20.25\nPune,19.3\n"
CSV_MEAN = f"{(12.5 + 20.25 + 19.3) / 3:.2f}"  # 17.35


@pytest.fixture(scope="module")
def raw(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.base_url}/v1", timeout=300,
                      headers={"Authorization": f"Bearer {server.api_key}", "OpenAI-Beta": "assistants=v2"}) as http:
        yield http


@pytest.fixture(scope="module")
def assistant_id(client: OpenAI) -> str:
    made = client.beta.assistants.create(model=MODEL, instructions=INSTRUCTIONS, temperature=0,
                                         tools=[{"type": "code_interpreter"}])
    assert made.tools[0].type == "code_interpreter"
    return made.id


def _code_calls(raw: httpx.Client, thread_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every code_interpreter call of the run, each step checked against the spec."""
    steps = raw.get(f"/threads/{thread_id}/runs/{run_id}/steps", params={"order": "asc"}).json()
    assert_matches_schema(steps, "ListRunStepsResponse")
    calls = []
    for step in steps["data"]:
        assert_matches_schema(step, "RunStepObject")
        if step["type"] == "tool_calls":
            assert step["status"] == "completed"
            calls += [call for call in step["step_details"]["tool_calls"] if call["type"] == "code_interpreter"]
    return calls


def _logs(calls: list[dict[str, Any]]) -> str:
    return "\n".join(output["logs"] for call in calls for output in call["code_interpreter"]["outputs"]
                     if output["type"] == "logs")


def test_code_interpreter_computes_a_sha256(server: LiveServer, client: OpenAI, raw: httpx.Client,
                                            assistant_id: str) -> None:
    secret = "hearth-sandbox-7f3a"
    thread = client.beta.threads.create(messages=[{"role": "user", "content": (
        f"Run this in Python and print the result: hashlib.sha256(b'{secret}').hexdigest()")}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id,
                                                   tool_choice=FORCED, temperature=0, poll_interval_ms=500,
                                                   timeout=600)
    assert run.status == "completed", run.last_error
    assert_matches_schema(raw.get(f"/threads/{thread.id}/runs/{run.id}").json(), "RunObject")
    calls = _code_calls(raw, thread.id, run.id)
    assert calls and "hashlib" in calls[0]["code_interpreter"]["input"]
    assert hashlib.sha256(secret.encode()).hexdigest() in _logs(calls)
    messages = raw.get(f"/threads/{thread.id}/messages", params={"run_id": run.id}).json()
    assert_matches_schema(messages, "ListMessagesResponse")
    assert messages["data"][0]["role"] == "assistant" and messages["data"][0]["status"] == "completed"
    # The run ran code: the usage API counts its session (the meter writes within seconds).
    deadline = time.monotonic() + 30
    while _sessions(server) < 1 and time.monotonic() < deadline:
        time.sleep(1)
    assert _sessions(server) >= 1


def test_code_interpreter_reads_an_uploaded_csv_and_draws_a_chart(client: OpenAI, raw: httpx.Client,
                                                                  assistant_id: str) -> None:
    uploaded = client.files.create(file=("values.csv", CSV.encode()), purpose="assistants")
    thread = client.beta.threads.create(
        tool_resources={"code_interpreter": {"file_ids": [uploaded.id]}},
        messages=[{"role": "user", "content": (
            "Load /mnt/data/values.csv with pandas. Print the mean of the 'value' column rounded to 2 "
            "decimals. Then draw a bar chart of 'value' by 'city' with matplotlib and save it as "
            "/mnt/data/chart.png.")}])
    assert thread.tool_resources.code_interpreter.file_ids == [uploaded.id]
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id,
                                                   tool_choice=FORCED, temperature=0, poll_interval_ms=500,
                                                   timeout=600)
    assert run.status == "completed", run.last_error
    calls = _code_calls(raw, thread.id, run.id)
    assert CSV_MEAN in _logs(calls), calls
    images = [output["image"]["file_id"] for call in calls for output in call["code_interpreter"]["outputs"]
              if output["type"] == "image"]
    assert images, calls
    chart = client.files.retrieve(images[0])
    assert chart.purpose == "assistants_output" and chart.filename.endswith(".png")
    assert client.files.content(images[0]).read().startswith(b"\x89PNG\r\n\x1a\n")
    answer = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data[0]
    assert_matches_schema(raw.get(f"/threads/{thread.id}/messages/{answer.id}").json(), "MessageObject")
    assert images[0] in [part.image_file.file_id for part in answer.content if part.type == "image_file"]


def test_code_interpreter_streams_its_steps(client: OpenAI, raw: httpx.Client, assistant_id: str) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": (
        "Print the product 48271 * 16807 computed in Python.")}])
    events = []
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant_id, tool_choice=FORCED,
                                         temperature=0) as stream:
        for event in stream:
            events.append(event)
            if event.event == "thread.run.step.delta":
                assert_matches_schema(event.data.model_dump(exclude_unset=True), "RunStepDeltaObject")
            elif event.event.startswith("thread.run.step."):
                assert_matches_schema(event.data.model_dump(exclude_unset=True), "RunStepObject")
    names = [event.event for event in events]
    assert names[-1] == "thread.run.completed", names
    deltas = [call for event in events if event.event == "thread.run.step.delta"
              for call in event.data.delta.step_details.tool_calls or []]
    logs = [output.logs for call in deltas if call.type == "code_interpreter" and call.code_interpreter
            for output in call.code_interpreter.outputs or [] if output.type == "logs"]
    assert any(str(48271 * 16807) in text for text in logs), deltas


def test_code_interpreter_in_v1_with_assistant_files(server: LiveServer, client: OpenAI) -> None:
    token = "kestrel-58213-quartz"
    uploaded = client.files.create(file=("token.txt", token.encode()), purpose="assistants")
    with httpx.Client(base_url=f"{server.base_url}/v1", timeout=300,
                      headers={"Authorization": f"Bearer {server.api_key}", "OpenAI-Beta": "assistants=v1"}) as v1:
        assistant = v1.post("/assistants", json={
            "model": MODEL, "instructions": INSTRUCTIONS, "tools": [{"type": "code_interpreter"}],
            "file_ids": [uploaded.id]}).json()
        assert assistant["tools"] == [{"type": "code_interpreter"}] and assistant["file_ids"] == [uploaded.id]
        run = v1.post("/threads/runs", json={
            "assistant_id": assistant["id"], "temperature": 0, "tool_choice": FORCED,
            "thread": {"messages": [{"role": "user", "content": "Print the text of the file /mnt/data/token.txt."}]},
        }).json()
        deadline = time.monotonic() + 600
        while run["status"] in ("queued", "in_progress") and time.monotonic() < deadline:
            time.sleep(0.5)
            run = v1.get(f"/threads/{run['thread_id']}/runs/{run['id']}").json()
        assert run["status"] == "completed", run
        steps = v1.get(f"/threads/{run['thread_id']}/runs/{run['id']}/steps").json()["data"]
        calls = [call for step in steps if step["type"] == "tool_calls" for call in step["step_details"]["tool_calls"]]
        assert calls and {call["type"] for call in calls} == {"code_interpreter"}
        assert token in _logs(calls), calls


def _compiles(code: str) -> bool:
    try:
        compile(code, "<code>", "exec")
    except SyntaxError:
        return False
    return True


def _sessions(server: LiveServer) -> int:
    with httpx.Client(base_url=f"{server.base_url}/v1", timeout=60,
                      headers={"Authorization": f"Bearer {server.admin_key}"}) as admin:
        usage = admin.get("/organization/usage/code_interpreter_sessions",
                          params={"start_time": int(time.time()) - 86400, "bucket_width": "1d"}).json()
    assert_matches_schema(usage, "UsageResponse")
    return sum(result.get("num_sessions", result.get("sessions", 0))
               for bucket in usage["data"] for result in bucket["results"])


def test_runaway_code_fails_in_the_sandbox_and_the_server_stays_healthy(
        server: LiveServer, client: OpenAI, raw: httpx.Client, assistant_id: str) -> None:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": (
        "Run this Python code: blocks = [bytearray(1 << 30) for _ in range(64)]")}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id,
                                                   tool_choice=FORCED, temperature=0, poll_interval_ms=500,
                                                   timeout=600)
    assert run.status == "completed", run.last_error
    calls = _code_calls(raw, thread.id, run.id)
    assert calls
    for call in calls:  # what the model wrote as asked (a small model may garble it) fails for memory
        if "bytearray(1 << 30)" in call["code_interpreter"]["input"] and _compiles(call["code_interpreter"]["input"]):
            assert "MemoryError" in _logs([call])
    assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200


def test_code_interpreter_refusals(raw: httpx.Client, client: OpenAI) -> None:
    function_only = client.beta.assistants.create(model=MODEL, tools=[{"type": "function", "function": {
        "name": "noop", "parameters": {"type": "object", "properties": {}}}}])
    thread = client.beta.threads.create()
    refused = raw.post(f"/threads/{thread.id}/runs", json={"assistant_id": function_only.id,
                                                           "tool_choice": FORCED})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tool_choice"
    bad = raw.post("/threads", json={"tool_resources": {"code_interpreter": {"file_ids": "file-x"}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tool_resources.code_interpreter.file_ids"
