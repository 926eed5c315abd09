"""What the batch suites share: input lines, upload, polling, downloads, a fresh project, the server's database."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

from openai import OpenAI
from openai.types import Batch

FINAL = ("completed", "failed", "expired", "cancelled")
DEADLINE = 300.0
POLL = 0.5
CHAT_MODEL = "gpt-4o-mini"
EMBEDDING_MODEL = "text-embedding-3-small"


def line(custom_id: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def chat_line(custom_id: str, text: str = "Say hi.", **body: Any) -> dict[str, Any]:
    return line(custom_id, "/v1/chat/completions",
                {"model": CHAT_MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": text}], **body})


def embedding_line(custom_id: str, text: str = "a small red fox", **body: Any) -> dict[str, Any]:
    return line(custom_id, "/v1/embeddings", {"model": EMBEDDING_MODEL, "input": text, **body})


def upload(client: OpenAI, lines: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(item) + "\n" for item in lines).encode()
    return client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch").id


def create(client: OpenAI, lines: list[dict[str, Any]], **kwargs: Any) -> Batch:
    endpoint = lines[0]["url"]
    return client.batches.create(input_file_id=upload(client, lines), endpoint=endpoint,
                                 completion_window="24h", **kwargs)


def wait_until(condition: Callable[[], bool], describe: Callable[[], str], deadline: float = DEADLINE) -> None:
    ends = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < ends, describe()
        time.sleep(POLL)


def wait_for(client: OpenAI, batch_id: str, statuses: tuple[str, ...] = FINAL) -> Batch:
    """Poll the batch until its status is one of ``statuses``."""
    seen: list[Batch] = []

    def reached() -> bool:
        seen.append(client.batches.retrieve(batch_id))
        return seen[-1].status in statuses

    wait_until(reached, lambda: f"batch still {seen[-1].status}: {seen[-1]}")
    return seen[-1]


def download(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(item) for item in client.files.content(file_id).text.splitlines()]
