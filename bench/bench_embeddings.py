"""Embeddings and moderation benchmark: Hearth vs the engines called directly, in one run.

Measures, on this machine:
- embeddings per second through Hearth's HTTP API (official SDK, batches of
  64 texts, base64 as the SDK asks by default, and float; and float over raw
  HTTP, which leaves out the SDK's own parsing of the floats into objects)
  and through `EmbeddingEngine.embed` in-process on the same batches;
- moderation texts per second through Hearth vs `ModerationEngine.classify`;
- the server's peak resident memory.

Each round runs every side once over the same texts, one after another, so
machine noise hits all sides alike; the medians over the rounds are reported.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable

import httpx
from common import REPO, live_server, peak_rss_mib, pulled_model_dir, timed

from hearth.engines.embeddings import EmbeddingEngine
from hearth.engines.moderation import ModerationEngine

EMBEDDING_MODEL = "all-minilm-l6-v2"
MODERATION_MODEL = "moderation-local"
BATCH = 64
ROUNDS = 5


def corpus() -> list[str]:
    """512 varied, realistic sentences: the moderation evaluation texts, then rephrased."""
    lines = (REPO / "tests/data/moderation_eval.jsonl").read_text().splitlines()
    texts = [json.loads(line)["text"] for line in lines if line.strip()]
    variants = [f"{text} (as someone said on day {i})" for i, text in enumerate(texts)]
    return (texts + variants)[:512]


def batches(texts: list[str]) -> list[list[str]]:
    return [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]


def rate(run: Callable[[list[str]], object], texts: list[str]) -> float:
    """Texts per second for ``run`` over every batch of ``texts``."""
    seconds, _ = timed(lambda: [run(batch) for batch in batches(texts)])
    return len(texts) / seconds


def measure(sides: dict[str, Callable[[list[str]], object]], texts: list[str]
            ) -> dict[str, float]:
    for run in sides.values():  # warm up every side: first runs allocate
        run(texts[:BATCH])
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, run in sides.items():
            rates[name].append(rate(run, texts))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    texts = corpus()
    embedder = EmbeddingEngine(pulled_model_dir(EMBEDDING_MODEL))
    moderator = ModerationEngine(pulled_model_dir(MODERATION_MODEL))
    with live_server([EMBEDDING_MODEL, MODERATION_MODEL]) as server:
        client = server.client(timeout=600)
        raw = httpx.Client(base_url=f"{server.base_url}/v1", timeout=600,
                           headers={"Authorization": f"Bearer {server.api_key}"})
        embeddings = measure({
            "Hearth, base64 (SDK default)": lambda batch: client.embeddings.create(
                model="text-embedding-3-small", input=batch),
            "Hearth, float": lambda batch: client.embeddings.create(
                model="text-embedding-3-small", input=batch, encoding_format="float"),
            "Hearth, float, raw HTTP": lambda batch: raw.post("/embeddings", json={
                "model": "text-embedding-3-small", "input": batch}).json(),
            "engine direct": embedder.embed,
        }, texts)
        moderation = measure({
            "Hearth": lambda batch: client.moderations.create(input=batch),
            "engine direct": moderator.classify,
        }, texts)
        peak = peak_rss_mib(server.process.pid)

    print(f"{len(texts)} texts, batches of {BATCH}, median of {ROUNDS} rounds\n")
    print("| measure | texts/s | vs direct |")
    print("|---|---|---|")
    for title, rates in (("embeddings", embeddings), ("moderation", moderation)):
        direct = rates["engine direct"]
        for side, value in rates.items():
            print(f"| {title}, {side} | {value:.0f} | {value / direct:.3f} |")
    print(f"| server peak RSS (both models loaded) | {peak:.0f} MiB | |")


if __name__ == "__main__":
    main()
