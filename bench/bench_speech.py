"""Speech benchmark: Hearth vs the Kokoro engine called directly, in one run.

Measures, on this machine:
- real-time factor (synthesis seconds / audio seconds) through Hearth's HTTP
  API and through `KokoroEngine` in-process on the same text, alternating A/B
  so machine noise hits both sides alike; the ratio is Hearth's overhead;
- time to the first audio byte of a streamed 4096-character request;
- throughput (audio seconds per wall second) for 4 concurrent requests vs 4
  one after another;
- the server's peak resident memory.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from common import live_server, peak_rss_mib, pulled_model_dir, timed

from hearth.audio.encode import AudioEncoder
from hearth.engines.kokoro import KokoroEngine

TEXT = (
    "Hearth answers the OpenAI API from models that run on your own machine. "
    "This paragraph is long enough to give the speech model real work, with a few "
    "sentences of ordinary length. It measures how much the server adds on top of "
    "the engine itself, which should be very little."
)
LONG_TEXT = " ".join(
    f"Paragraph {i} of the long text goes on about nothing in particular, at an even pace."
    for i in range(60)
)[:4096]
ROUNDS = 3
SAMPLE_RATE = 24_000


def direct(engine: KokoroEngine, text: str) -> float:
    """Synthesize and encode to pcm in-process; returns seconds of audio."""
    encoder = AudioEncoder("pcm", SAMPLE_RATE)
    samples = 0
    for chunk in engine.synthesize(text, "af_alloy"):
        encoder.encode(chunk)
        samples += len(chunk)
    encoder.finish()
    return samples / SAMPLE_RATE


def through_hearth(client, text: str) -> float:
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=text,
                                       response_format="pcm").content
    return len(audio) / 2 / SAMPLE_RATE


def first_byte_seconds(client, text: str) -> float:
    started = time.perf_counter()
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=text, response_format="mp3") as response:
        for chunk in response.iter_bytes():
            if chunk:
                return time.perf_counter() - started
    raise RuntimeError("no audio")


def main() -> None:
    engine = KokoroEngine(pulled_model_dir("kokoro-82m"))
    with live_server(["kokoro-82m"]) as server:
        client = server.client(timeout=600)
        through_hearth(client, "Warm up.")
        direct(engine, "Warm up.")

        hearth_rtf, direct_rtf = [], []
        for _ in range(ROUNDS):
            seconds, audio = timed(lambda: through_hearth(client, TEXT))
            hearth_rtf.append(seconds / audio)
            seconds, audio = timed(lambda: direct(engine, TEXT))
            direct_rtf.append(seconds / audio)

        ttfb = [first_byte_seconds(client, LONG_TEXT) for _ in range(5)]

        sequential, audio = timed(lambda: [through_hearth(client, TEXT) for _ in range(4)])
        sequential_rate = sum(audio) / sequential
        with ThreadPoolExecutor(4) as pool:
            concurrent, audio = timed(lambda: list(pool.map(
                lambda _: through_hearth(client, TEXT), range(4))))
        concurrent_rate = sum(audio) / concurrent
        peak = peak_rss_mib(server.process.pid)

    h, d = statistics.median(hearth_rtf), statistics.median(direct_rtf)
    print("| measure | value |")
    print("|---|---|")
    print(f"| real-time factor, Hearth (median of {ROUNDS}) | {h:.3f} |")
    print(f"| real-time factor, engine direct (median of {ROUNDS}) | {d:.3f} |")
    print(f"| Hearth overhead | {(h / d - 1) * 100:+.1f}% |")
    print(f"| first audio byte, 4096-char input, streamed mp3 (median of 5) | "
          f"{statistics.median(ttfb):.2f} s |")
    print(f"| throughput, 4 one after another | {sequential_rate:.2f} audio s / s |")
    print(f"| throughput, 4 concurrent | {concurrent_rate:.2f} audio s / s |")
    print(f"| server peak RSS | {peak:.0f} MiB |")


if __name__ == "__main__":
    main()
