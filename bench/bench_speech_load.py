"""Speech under load: 100 short requests at once against one server.

Each request is an mp3 of one short sentence. The server admits as many as
its queue holds and refuses the rest with 429; the benchmark reports how
many were served and refused, and for the served ones the seconds until
their first audio byte and until their whole answer (p50, p95, first, last).
With requests served first come, first served, one that starts is finished
before later ones take the model's thread, so answers arrive spread over the
run; with turns taken item by item every served request would finish near
the end of the whole run.

    python bench/bench_speech_load.py [--requests 100]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from common import live_server

MODEL = "kokoro-82m"
TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def load(http: httpx.Client, body: dict[str, object], requests: int) -> list[tuple[int, float, float]]:
    """Send ``requests`` requests at once: each one's status, and seconds until its first audio
    byte and until its last."""
    go = threading.Event()
    started = 0.0

    def one(_: int) -> tuple[int, float, float]:
        go.wait()
        with http.stream("POST", "/v1/audio/speech", json=body) as response:
            chunks = response.iter_bytes()
            next(chunks, b"")
            first = time.perf_counter() - started
            for _ in chunks:
                pass
            return response.status_code, first, time.perf_counter() - started

    with ThreadPoolExecutor(requests) as pool:
        futures = [pool.submit(one, i) for i in range(requests)]
        started = time.perf_counter()
        go.set()
        return [future.result() for future in futures]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with live_server([MODEL]) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        body = {"model": "tts-1", "voice": "alloy", "input": TEXT, "response_format": "mp3"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=1200,
                          limits=httpx.Limits(max_connections=args.requests + 2)) as http:
            http.post("/v1/audio/speech", json=body).raise_for_status()  # warm up
            outcomes = load(http, body, args.requests)
    served = [(first, done) for status, first, done in outcomes if status == 200]
    firsts, dones = sorted(first for first, _ in served), sorted(done for _, done in served)
    refused = sum(1 for status, _, _ in outcomes if status == 429)
    print(f"{args.requests} concurrent speech requests ({MODEL}, one sentence each, mp3); "
          f"{len(served)} served, {refused} refused (429)\n")
    print("| seconds from the start | p50 | p95 | first | last |")
    print("|---|---:|---:|---:|---:|")
    print(f"| first audio byte | {percentile(firsts, 50):.1f} | {percentile(firsts, 95):.1f} | "
          f"{firsts[0]:.1f} | {firsts[-1]:.1f} |")
    print(f"| whole answer | {percentile(dones, 50):.1f} | {percentile(dones, 95):.1f} | "
          f"{dones[0]:.1f} | {dones[-1]:.1f} |")


if __name__ == "__main__":
    main()
