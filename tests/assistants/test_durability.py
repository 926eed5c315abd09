"""Runs across a process death, on a server of their own: a run in progress when the server was
SIGKILLed is finished by the next server on the same data directory, never left in progress:
a background run by its job (taken over once its lease ran out), a streamed run by the job
that watched over the request driving it.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, start_server, stop_server

SETTINGS = {"HEARTH_DEFAULT_MODELS": json.dumps(["qwen2.5-coder-0.5b"]), "HEARTH_JOB_LEASE_SECONDS": "2"}
V2 = {"OpenAI-Beta": "assistants=v2"}


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    started: list[LiveServer] = []
    yield started
    for live in started:
        if live.process.poll() is None:
            stop_server(live)
        print(f"--- {live.data_dir} (exit {live.process.returncode}) ---\n{live.log()[-5000:]}")


def api(live: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=f"{live.base_url}/v1", timeout=120,
                        headers={"Authorization": f"Bearer {live.api_key}", **V2})


def wait_for(client: httpx.Client, thread_id: str, run_id: str, statuses: tuple[str, ...],
             deadline: float = 600) -> dict:
    ends = time.monotonic() + deadline
    while (run := client.get(f"/threads/{thread_id}/runs/{run_id}").json())["status"] not in statuses:
        assert time.monotonic() < ends, run
        time.sleep(0.2)
    return run


def test_runs_in_progress_when_the_server_dies_are_finished_after_a_restart(
        tmp_path: Path, models_dir: Path, servers: list[LiveServer]) -> None:
    data_dir = tmp_path / "data"
    first = start_server(data_dir, models_dir, **SETTINGS)
    servers.append(first)
    client = api(first)
    assistant = client.post("/assistants", json={"model": "gpt-4o-mini"}).json()
    ask = {"messages": [{"role": "user", "content": "Write a long story about a dragon and a lighthouse."}]}
    background_thread = client.post("/threads", json=ask).json()
    streamed_thread = client.post("/threads", json=ask).json()
    options = {"assistant_id": assistant["id"], "max_completion_tokens": 256}

    background = client.post(f"/threads/{background_thread['id']}/runs", json=options).json()
    with client.stream("POST", f"/threads/{streamed_thread['id']}/runs", json={**options, "stream": True}) as stream:
        for line in stream.iter_lines():
            if line == "event: thread.message.delta":
                break
        streamed_id = client.get(f"/threads/{streamed_thread['id']}/runs").json()["data"][0]["id"]
        wait_for(client, background_thread["id"], background["id"], ("in_progress",))
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    client.close()

    second = start_server(data_dir, models_dir, **SETTINGS)
    servers.append(second)
    client = api(second)
    for thread_id, run_id in ((background_thread["id"], background["id"]), (streamed_thread["id"], streamed_id)):
        run = wait_for(client, thread_id, run_id, ("completed", "incomplete", "failed", "cancelled", "expired"))
        assert run["status"] in ("completed", "incomplete"), run
        messages = client.get(f"/threads/{thread_id}/messages").json()["data"]
        assert [m["role"] for m in messages] == ["assistant", "user"]
        assert messages[0]["status"] in ("completed", "incomplete") and messages[0]["content"][0]["text"]["value"]
        steps = client.get(f"/threads/{thread_id}/runs/{run_id}/steps").json()["data"]
        assert [s["status"] for s in steps] == ["completed"]
    client.close()
    stop_server(second)
    assert "Traceback" not in second.log(), second.log()
