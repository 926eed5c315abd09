"""Batch benchmark: lines through /v1/batches vs the same requests sent online, and online latency
while a batch runs.

Measures, on this machine, through the official SDK against one live server:
- chat: N lines (200 by default; `BATCH_CHAT_LINES` sets it), 32 max tokens
  each at temperature 0, through a batch (upload to completed), vs the same
  requests online one at a time and four at a time;
- embeddings: single-text lines through a batch vs the same texts sent online
  64 to a request (the route's own batching) and one to a request;
- online chat latency (16 max tokens, non-streamed), p50 and p95 over 20
  requests one after another, with the server idle and while a chat batch
  runs beside them.

`BATCH_PARTS` picks parts (default "chat,embeddings,latency").

Lines per second counts the lines answered over the wall time from the
batch's creation until a poll (every 0.2 s) sees it completed.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import live_server, timed
from openai import OpenAI
from openai.types import Batch

CHAT_MODEL = "qwen2.5-coder-0.5b"
EMBEDDING_MODEL = "all-minilm-l6-v2"
CHAT_LINES = int(os.environ.get("BATCH_CHAT_LINES", "200"))
EMBEDDING_LINES = 1000
LATENCY_REQUESTS = 20
PARTS = set(os.environ.get("BATCH_PARTS", "chat,embeddings,latency").split(","))


def chat_body(i: int, max_tokens: int = 32) -> dict[str, Any]:
    return {"model": CHAT_MODEL, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": f"Write one sentence about the number {i}."}]}


def texts(count: int) -> list[str]:
    return [f"Sentence {i}: a short note about item number {i} in the catalogue." for i in range(count)]


def start_batch(client: OpenAI, url: str, bodies: list[dict[str, Any]]) -> str:
    lines = "".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": url, "body": body}) + "\n"
                    for i, body in enumerate(bodies))
    file_id = client.files.create(file=("bench.jsonl", io.BytesIO(lines.encode())), purpose="batch").id
    return client.batches.create(input_file_id=file_id, endpoint=url, completion_window="24h").id  # type: ignore[arg-type]


def wait_for(client: OpenAI, batch_id: str) -> Batch:
    while (batch := client.batches.retrieve(batch_id)).status not in ("completed", "failed", "expired",
                                                                      "cancelled"):
        time.sleep(0.2)
    return batch


def run_batch(client: OpenAI, url: str, bodies: list[dict[str, Any]]) -> float:
    """Lines per second for ``bodies`` run as one batch, from create to completed."""
    started = time.perf_counter()
    batch = wait_for(client, start_batch(client, url, bodies))
    seconds = time.perf_counter() - started
    counts = batch.request_counts
    assert batch.status == "completed" and counts is not None and counts.completed == len(bodies), batch
    return len(bodies) / seconds


def online_rate(send: Callable[[dict[str, Any]], object], bodies: list[dict[str, Any]], concurrency: int) -> float:
    with ThreadPoolExecutor(concurrency) as pool:
        seconds, _ = timed(lambda: list(pool.map(send, bodies)))
    return len(bodies) / seconds


def latencies(client: OpenAI) -> list[float]:
    """Seconds for each of LATENCY_REQUESTS short online chat requests, one after another."""
    results = []
    for i in range(LATENCY_REQUESTS):
        seconds, _ = timed(lambda i=i: client.chat.completions.create(**chat_body(1000 + i, max_tokens=16)))
        results.append(seconds)
    return results


def percentiles(values: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return statistics.median(values) * 1000, cuts[18] * 1000


def latency_under_batch(client: OpenAI) -> list[float]:
    """Online latencies measured while a chat batch runs; the batch is cancelled afterwards."""
    batch_id = start_batch(client, "/v1/chat/completions", [chat_body(i) for i in range(400)])
    while client.batches.retrieve(batch_id).request_counts.completed < 4:  # type: ignore[union-attr]
        time.sleep(0.2)  # the batch is validated and its lines hold the model's slots
    measured = latencies(client)
    assert client.batches.cancel(batch_id).status == "cancelling", "the batch ended before the online requests"
    wait_for(client, batch_id)
    return measured


def main() -> None:
    print(f"{os.cpu_count()} cores; chat: {CHAT_MODEL}, {CHAT_LINES} requests of 32 max tokens at "
          f"temperature 0; embeddings: {EMBEDDING_LINES} texts\n")
    with live_server([CHAT_MODEL, EMBEDDING_MODEL]) as server:
        client = server.client(timeout=600)
        if "chat" in PARTS:
            chat_rates(client)
        if "embeddings" in PARTS:
            embedding_rates(client)
        if "latency" in PARTS:
            idle = percentiles(latencies(client))
            busy = percentiles(latency_under_batch(client))
            print(f"| online chat latency, 16 max tokens ({LATENCY_REQUESTS} requests) | p50 ms | p95 ms |")
            print("|---|---|---|")
            print(f"| server idle | {idle[0]:.0f} | {idle[1]:.0f} |")
            print(f"| a chat batch running | {busy[0]:.0f} | {busy[1]:.0f} |")


def chat_rates(client: OpenAI) -> None:
    """Batch vs online, each run on prompts of its own (llama.cpp keeps recent prompts' state, so a
    repeated prompt would answer faster the second time), batch and four-at-a-time alternating over
    two rounds so a change in the machine's load falls on both."""
    def send_chat(body: dict[str, Any]) -> object:
        return client.chat.completions.create(**body)

    # Warm up as both modes run: four at once (llama.cpp's first batch of four costs seconds more).
    online_rate(send_chat, [chat_body(-i) for i in range(1, 9)], 4)

    prompts = (chat_body(i) for i in itertools.count())
    batch_seconds = four_seconds = 0.0
    for _ in range(2):
        batch_seconds += CHAT_LINES / run_batch(client, "/v1/chat/completions",
                                                list(itertools.islice(prompts, CHAT_LINES)))
        four_seconds += CHAT_LINES / online_rate(send_chat, list(itertools.islice(prompts, CHAT_LINES)), 4)
    chat_batch, chat_four = 2 * CHAT_LINES / batch_seconds, 2 * CHAT_LINES / four_seconds
    chat_one = online_rate(send_chat, list(itertools.islice(prompts, CHAT_LINES)), 1)
    print(f"| chat, {CHAT_LINES} requests | requests/s | vs batch |")
    print("|---|---|---|")
    print(f"| batch (two runs) | {chat_batch:.2f} | 1.00 |")
    print(f"| online, one at a time | {chat_one:.2f} | {chat_one / chat_batch:.2f} |")
    print(f"| online, four at a time (two runs) | {chat_four:.2f} | {chat_four / chat_batch:.2f} |")
    print()


def embedding_rates(client: OpenAI) -> None:
    words = texts(EMBEDDING_LINES)
    singles = [{"model": EMBEDDING_MODEL, "input": text} for text in words]
    embedding_batch = run_batch(client, "/v1/embeddings", singles)
    grouped = [{"model": EMBEDDING_MODEL, "input": words[i:i + 64]} for i in range(0, len(words), 64)]
    seconds, _ = timed(lambda: [client.embeddings.create(**body) for body in grouped])
    embedding_grouped = len(words) / seconds
    embedding_one = online_rate(lambda body: client.embeddings.create(**body), singles, 1)
    print(f"| embeddings, {EMBEDDING_LINES} texts | texts/s |")
    print("|---|---|")
    print(f"| batch, one text a line | {embedding_batch:.0f} |")
    print(f"| online, 64 texts a request | {embedding_grouped:.0f} |")
    print(f"| online, one text a request, one at a time | {embedding_one:.0f} |")
    print()


if __name__ == "__main__":
    main()
