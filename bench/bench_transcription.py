"""Transcription benchmark: Hearth vs faster-whisper called directly, in one run.

Measures, on this machine:
- real-time factor (transcription seconds / audio seconds) of a one-minute wav
  through Hearth's HTTP API and through faster-whisper's `WhisperModel` on the
  same pulled model directory with the same options (beam 5, best of 5, the
  temperature fallback ladder, no VAD), alternating A/B so machine noise hits
  both sides alike; the ratio is Hearth's overhead;
- throughput (audio seconds per wall second) for 4 requests at once vs 4 one
  after another;
- the server's peak resident memory (VmHWM) before and after transcribing a
  30-minute and then a 60-minute mp3 (one minute of speech looped, at 32 kbit/s
  so the hour, about 14 MiB, fits the 25 MiB upload limit): long audio is
  transcribed a window at a time, so the hour should not raise the peak.

The speech is Kokoro's, synthesized by a first server; a second server runs
Whisper alone so its memory is Whisper's.
"""

from __future__ import annotations

import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import numpy as np
from common import live_server, peak_rss_mib, pulled_model_dir, timed
from faster_whisper import WhisperModel

from hearth.engines.whisper import BEAM_SIZE, BEST_OF, FALLBACK_TEMPERATURES

PARAGRAPHS = [
    ("The town sits at the edge of a wide valley, where two rivers meet before running "
     "south to the sea. Most mornings a thin fog covers the fields until the sun climbs "
     "over the eastern hills. Farmers bring vegetables, cheese and fresh bread to the "
     "market square, and by noon the stalls are nearly empty."),
    ("In the old library, the shelves reach all the way to the ceiling. Students come "
     "after their classes to read quietly, while the librarian sorts the returned books "
     "and answers questions about history, science and local maps. On Fridays there is a "
     "reading group that talks about one novel every month."),
    ("Building a small wooden boat takes patience. First you cut the frame and let the "
     "glue dry overnight. Then the planks are bent with steam and fixed along the ribs. "
     "Finally the hull is sanded, painted twice, and left to cure for a week before it "
     "touches the water."),
    ("The weather report promised light rain in the afternoon, so we packed jackets and "
     "a thermos of tea. The trail climbed through pine forest for an hour, then opened "
     "onto a ridge with a view of the lake, three villages and the snowy peaks beyond."),
]
VOICES = ["alloy", "echo", "nova", "onyx"]
SAMPLE_RATE = 24_000
ROUNDS = 3
LONG_MINUTES = (30, 60)


def synthesize_minute() -> np.ndarray:
    """About a minute of speech from Hearth's own speech endpoint, as 24 kHz float32."""
    with live_server(["kokoro-82m"]) as server:
        client = server.client(timeout=600)
        parts = [client.audio.speech.create(model="tts-1", voice=voice, input=text,
                                            response_format="pcm").content
                 for voice, text in zip(VOICES, PARAGRAPHS, strict=True)]
    return np.frombuffer(b"".join(parts), dtype="<i2").astype(np.float32) / 32768


def encode(samples: np.ndarray, muxer: str, codec: str, path: Path, **options: str) -> Path:
    with av.open(str(path), "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=SAMPLE_RATE, layout="mono", options=options)
        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
        for start in range(0, len(pcm), SAMPLE_RATE * 10):
            frame = av.AudioFrame.from_ndarray(pcm[None, start:start + SAMPLE_RATE * 10],
                                               format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def long_mp3(minute: np.ndarray, minutes: int, path: Path) -> Path:
    repeats = int(np.ceil(minutes * 60 * SAMPLE_RATE / len(minute)))
    looped = np.tile(minute, repeats)[: minutes * 60 * SAMPLE_RATE]
    return encode(looped, "mp3", "libmp3lame", path, b="32k")


@dataclass(frozen=True)
class LongRun:
    minutes: int
    mib: float  # mp3 size
    words: int
    seconds: float  # wall time
    peak_mib: float  # server VmHWM after it


def long_runs(client, pid: int, minute: np.ndarray, scratch: Path) -> list[LongRun]:
    """Each long file in turn through the API, with the server's peak memory after it."""
    runs = []
    for minutes in LONG_MINUTES:
        mp3 = long_mp3(minute, minutes, scratch / f"long-{minutes}.mp3")
        seconds, text = timed(partial(through_hearth, client, mp3))
        runs.append(LongRun(minutes, mp3.stat().st_size / 2**20, len(str(text).split()),
                            seconds, peak_rss_mib(pid)))
    return runs


def direct(model: WhisperModel, path: Path) -> str:
    segments, _ = model.transcribe(str(path), task="transcribe", beam_size=BEAM_SIZE,
                                   best_of=BEST_OF, temperature=FALLBACK_TEMPERATURES,
                                   vad_filter=False)
    return "".join(segment.text for segment in segments)


def through_hearth(client, path: Path) -> str:
    with path.open("rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio).text


def main() -> None:
    minute = synthesize_minute()
    seconds = len(minute) / SAMPLE_RATE
    model_dir = pulled_model_dir("whisper-base")
    with tempfile.TemporaryDirectory(prefix="hearth-bench-stt-") as scratch:
        wav = encode(minute, "wav", "pcm_s16le", Path(scratch) / "minute.wav")
        model = WhisperModel(str(model_dir), device="cpu", compute_type="int8",
                             local_files_only=True)
        with live_server(["whisper-base"]) as server:
            client = server.client(timeout=3600)
            through_hearth(client, wav)
            direct(model, wav)

            hearth_rtf, direct_rtf = [], []
            for _ in range(ROUNDS):
                elapsed, _ = timed(lambda: through_hearth(client, wav))
                hearth_rtf.append(elapsed / seconds)
                elapsed, _ = timed(lambda: direct(model, wav))
                direct_rtf.append(elapsed / seconds)

            sequential, _ = timed(lambda: [through_hearth(client, wav) for _ in range(4)])
            with ThreadPoolExecutor(4) as pool:
                concurrent, _ = timed(lambda: list(pool.map(
                    lambda _: through_hearth(client, wav), range(4))))

            peak_before = peak_rss_mib(server.process.pid)
            runs = long_runs(client, server.process.pid, minute, Path(scratch))

    h, d = statistics.median(hearth_rtf), statistics.median(direct_rtf)
    print(f"Audio: {seconds:.1f} s of Kokoro speech (wav); long files: "
          + "; ".join(f"{r.minutes} min mp3, {r.mib:.1f} MiB, {r.words} words transcribed"
                      for r in runs) + ".\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| real-time factor, Hearth (median of {ROUNDS}) | {h:.3f} |")
    print(f"| real-time factor, faster-whisper direct (median of {ROUNDS}) | {d:.3f} |")
    print(f"| Hearth overhead | {(h / d - 1) * 100:+.1f}% |")
    print(f"| throughput, 4 one after another | {4 * seconds / sequential:.1f} audio s / s |")
    print(f"| throughput, 4 concurrent | {4 * seconds / concurrent:.1f} audio s / s |")
    print(f"| server peak RSS before the long files | {peak_before:.0f} MiB |")
    for run in runs:
        print(f"| {run.minutes}-minute mp3: wall time (real-time factor) | {run.seconds:.0f} s "
              f"({run.seconds / (run.minutes * 60):.3f}) |")
        print(f"| server peak RSS after the {run.minutes}-minute file | {run.peak_mib:.0f} MiB |")


if __name__ == "__main__":
    main()
