"""Moderation under a long input: how long one input at the 32,768-token limit takes, and what
short requests sent meanwhile wait.

On one live server with the local moderation model, through the official SDK:
- a 1 MB input (once scored for minutes) is now refused at once: its 400's latency;
- the longest input accepted (about 32,000 tokens of prose), moderated alone;
- short moderation requests, one after another: p50 and p95 latency with the server idle, and
  while the long input is being moderated beside them. A long input is scored 32 pieces a model
  call and yields its turn between calls, so a short request waits for at most one such call
  rather than the whole long input.

    python bench/bench_moderation_load.py
"""

from __future__ import annotations

import statistics
import threading

import openai
from common import live_server, timed

MODEL = "moderation-local"
SHORT = "Can you recommend a good recipe for beef stew?"
SENTENCE = "The committee met on Tuesday to review the annual budget of the library. "  # 14 tokens
SHORT_REQUESTS = 20


def percentiles(values: list[float]) -> tuple[float, float]:
    return statistics.median(values) * 1000, statistics.quantiles(values, n=20, method="inclusive")[18] * 1000


def short_latencies(client: openai.OpenAI, keep_going: threading.Event | None = None) -> list[float]:
    seconds = []
    for _ in range(SHORT_REQUESTS):
        if keep_going is not None and not keep_going.is_set():
            break
        took, _ = timed(lambda: client.moderations.create(model=MODEL, input=SHORT))
        seconds.append(took)
    return seconds


def main() -> None:
    with live_server([MODEL]) as server:
        client = server.client(timeout=600)
        client.moderations.create(model=MODEL, input=SHORT)  # warm up
        refused, _ = timed(lambda: _refused(client, "x" * 10 + " word" * 200_000))
        longest = SENTENCE * 2300  # 32,200 of the model's tokens
        alone, _ = timed(lambda: client.moderations.create(model=MODEL, input=longest))
        idle = short_latencies(client)

        running = threading.Event()
        running.set()
        beside: list[float] = []

        def shorts() -> None:
            beside.extend(short_latencies(client, running))

        worker = threading.Thread(target=shorts)
        worker.start()
        long_seconds, _ = timed(lambda: client.moderations.create(model=MODEL, input=longest))
        running.clear()
        worker.join()

    print(f"1 MB input: refused (400 context_length_exceeded) in {refused * 1000:.0f} ms")
    print(f"input of {len(longest.split())} words (about 32,000 tokens): {alone:.1f} s alone, "
          f"{long_seconds:.1f} s beside the short requests\n")
    print("| short moderation requests, one after another | n | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    print(f"| server idle | {len(idle)} | {percentiles(idle)[0]:.0f} | {percentiles(idle)[1]:.0f} |")
    if len(beside) > 1:
        print(f"| beside the long input | {len(beside)} | {percentiles(beside)[0]:.0f} | "
              f"{percentiles(beside)[1]:.0f} |")


def _refused(client: openai.OpenAI, text: str) -> None:
    try:
        client.moderations.create(model=MODEL, input=text)
    except openai.BadRequestError as exc:
        assert exc.code == "context_length_exceeded", exc
        return
    raise AssertionError("a 1 MB input was accepted")


if __name__ == "__main__":
    main()
