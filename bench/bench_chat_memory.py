"""Server memory over many distinct chats: does it plateau?

Each chat has a prompt no earlier one shares, so llama.cpp's host-memory
prompt cache can only grow; the server's resident memory is sampled as the
chats go. Run once with Hearth's bound on that cache (the default) and once
with llama.cpp's own default (8 GiB), side by side.

    python bench/bench_chat_memory.py --chats 2000 --unbounded-chats 1000
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import live_server


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def run(chats: int, every: int, cache_mib: int) -> list[tuple[int, float]]:
    """RSS after every ``every`` chats, sent four at a time (llama.cpp's slots) to save wall time."""
    samples: list[tuple[int, float]] = []
    with live_server(["qwen2.5-coder-0.5b"], HEARTH_LLM_PROMPT_CACHE_MIB=str(cache_mib)) as server, \
            ThreadPoolExecutor(4) as pool:
        client = server.client(timeout=600)

        def chat(i: int) -> None:
            client.chat.completions.create(
                model="gpt-4o-mini", max_tokens=1, temperature=0,
                messages=[{"role": "user", "content": f"Request {i}: what is {i} plus {i * 7}?"}])

        for start in range(0, chats + 1, every):
            samples.append((start, rss_mib(server.process.pid)))
            print(f"cache {cache_mib} MiB: {start} chats, {samples[-1][1]:.0f} MiB", flush=True)
            list(pool.map(chat, range(start, min(start + every, chats))))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--unbounded-chats", type=int, default=1000,
                        help="chats for the comparison run with llama.cpp's own 8 GiB cache")
    args = parser.parse_args()
    runs = {256: run(args.chats, args.every, 256),
            8192: run(args.unbounded_chats, args.every, 8192)}
    print("| chats | RSS MiB, prompt cache 256 MiB (Hearth's default) | RSS MiB, 8192 MiB (llama.cpp's) |")
    print("|---:|---:|---:|")
    unbounded = dict(runs[8192])
    for count, bounded in runs[256]:
        other = f"{unbounded[count]:.0f}" if count in unbounded else "-"
        print(f"| {count} | {bounded:.0f} | {other} |")


if __name__ == "__main__":
    main()
