"""Chat benchmark: Hearth (official SDK, streaming) vs llama.cpp called in-process, in one run.

Measures, on this machine:
- generation tokens per second and time to first token through Hearth's
  /v1/chat/completions stream, and through `LlamaEngine.chat_stream` (xllamacpp,
  llama.cpp's own server code in-process) with the same model file, context,
  slots, threads, prompt and sampling; rounds alternate the two sides so machine
  noise hits both alike, and medians are reported;
- aggregate tokens per second with 4 concurrent streams vs 1, through Hearth;
- the server's peak resident memory.

Tokens per second counts the tokens after the first over the time after the
first, so it measures generation alone; time to first token covers the prompt.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from common import LiveServer, live_server, peak_rss_mib, pulled_model_dir
from openai import OpenAI

from hearth.catalog.catalog import Catalog
from hearth.engines.llama import LlamaEngine
from hearth.settings import Settings

MODEL = "qwen2.5-coder-0.5b"
MAX_TOKENS = 128
ROUNDS = 6
PROMPT = "Explain how a bicycle works, part by part, in detail."


@dataclass
class Run:
    ttft: float  # seconds to the first content token
    tokens: int
    generation_seconds: float  # from the first token to the last

    @property
    def tokens_per_second(self) -> float:
        return (self.tokens - 1) / self.generation_seconds


def timed_stream(started: float, pieces: Iterable[str]) -> Run:
    """Time a stream of text pieces (one per generated token) requested at `started`."""
    first = last = 0.0
    tokens = 0
    for piece in pieces:
        if not piece:
            continue
        last = time.perf_counter()
        first = first or last
        tokens += 1
    return Run(first - started, tokens, last - first)


def request(prompt: str = PROMPT) -> dict:
    # temperature 0 makes both sides generate the same tokens, so the work is equal.
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS,
            "temperature": 0}


def via_hearth(client: OpenAI, prompt: str = PROMPT) -> Run:
    started = time.perf_counter()
    stream = client.chat.completions.create(model=MODEL, stream=True, **request(prompt))
    return timed_stream(started, (chunk.choices[0].delta.content or ""
                                  for chunk in stream if chunk.choices))


def via_raw_http(server: LiveServer) -> Run:
    """The same stream read with plain httpx: the server's cost without the SDK's parsing."""
    started = time.perf_counter()
    body = {"model": MODEL, "stream": True, **request()}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=600,
                      headers={"Authorization": f"Bearer {server.api_key}"}) as response:
        payloads = (json.loads(line[6:]) for line in response.iter_lines()
                    if line.startswith("data: {"))
        return timed_stream(started, (choice["delta"].get("content") or ""
                                      for chunk in payloads for choice in chunk["choices"]))


def via_engine(engine: LlamaEngine) -> Run:
    started = time.perf_counter()
    chunks = engine.chat_stream(request())
    return timed_stream(started, (choice["delta"].get("content") or ""
                                  for chunk in chunks for choice in chunk.get("choices", [])))


def alternate(sides: dict[str, Callable[[], Run]]) -> dict[str, list[Run]]:
    for run in sides.values():  # warm up: first runs fill caches and allocate
        run()
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    for _ in range(ROUNDS):
        for name, run in sides.items():
            runs[name].append(run())
    return runs


def aggregate_rate(client: OpenAI, streams: int) -> float:
    """Generated tokens per second across `streams` concurrent streams, wall clock."""
    prompts = [f"{PROMPT} (Reader {i}.)" for i in range(streams)]
    started = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        runs = list(pool.map(lambda p: via_hearth(client, p), prompts))
    return sum(run.tokens for run in runs) / (time.perf_counter() - started)


def main() -> None:
    spec = Catalog.load().resolve(MODEL)
    settings = Settings()
    engine = LlamaEngine(pulled_model_dir(MODEL) / "model.gguf",
                         n_ctx=int(spec.options["n_ctx"]), n_parallel=int(spec.options["n_parallel"]),
                         threads=settings.inference_threads or os.cpu_count() or 2)
    with live_server([MODEL]) as server:
        client = server.client()
        runs = alternate({"hearth": lambda: via_hearth(client),
                          "raw": lambda: via_raw_http(server),
                          "llama.cpp": lambda: via_engine(engine)})
        single = aggregate_rate(client, 1)
        quad = aggregate_rate(client, 4)
        peak = peak_rss_mib(server.process.pid)
    engine.close()

    rate = {name: statistics.median(r.tokens_per_second for r in rs) for name, rs in runs.items()}
    ttft = {name: statistics.median(r.ttft for r in rs) * 1000 for name, rs in runs.items()}
    tokens = {name: rs[0].tokens for name, rs in runs.items()}
    print(f"model {MODEL}, {MAX_TOKENS} max tokens, temperature 0, {ROUNDS} alternating rounds, "
          f"{os.cpu_count()} cores\n")
    print("| measure | Hearth (SDK stream) | llama.cpp in-process | ratio |")
    print("|---|---|---|---|")
    print(f"| generation tokens/s (median) | {rate['hearth']:.1f} | {rate['llama.cpp']:.1f} | "
          f"{rate['hearth'] / rate['llama.cpp']:.3f} |")
    print(f"| time to first token, ms (median) | {ttft['hearth']:.0f} | {ttft['llama.cpp']:.0f} | "
          f"{ttft['hearth'] / ttft['llama.cpp']:.2f} (lower is better) |")
    print(f"| tokens generated per run | {tokens['hearth']} | {tokens['llama.cpp']} | |")
    print(f"| generation tokens/s, Hearth read with plain httpx (median) | {rate['raw']:.1f} | "
          f"{rate['llama.cpp']:.1f} | {rate['raw'] / rate['llama.cpp']:.3f} |")
    print()
    print("| concurrency (Hearth) | aggregate tokens/s |")
    print("|---|---|")
    print(f"| 1 stream | {single:.1f} |")
    print(f"| 4 streams | {quad:.1f} ({quad / single:.2f}x) |")
    print(f"\nserver peak memory (VmHWM): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
