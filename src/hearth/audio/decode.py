"""Decode uploaded audio (any container FFmpeg reads) to 16 kHz mono float32.

Whisper consumes 16 kHz mono float32 samples. Uploads arrive as flac, mp3, mp4,
mpeg, mpga, m4a, ogg, wav, webm or any video with an audio track, at any sample
rate and channel layout; PyAV (FFmpeg) demuxes only the audio stream and its
resampler downmixes and converts. Decoding is a generator of bounded chunks so
the compressed input is read incrementally and callers that can work in pieces
(Whisper transcribes a window at a time) never hold the whole signal;
`decode_audio` assembles it for callers that need it at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

import av
import numpy as np

SAMPLE_RATE = 16_000
DEFAULT_CHUNK_SECONDS = 30.0

AudioSource = str | os.PathLike[str] | BinaryIO


class AudioDecodeError(ValueError):
    """The upload cannot be decoded as audio; the message is safe to show the client."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, SAMPLE_RATE Hz
    duration: float  # seconds


def iter_audio_chunks(
    source: AudioSource, *, chunk_seconds: float = DEFAULT_CHUNK_SECONDS
) -> Iterator[np.ndarray]:
    """Yield the first audio stream of `source` as 16 kHz mono float32 chunks.

    Every chunk holds `chunk_seconds` of audio except the last, which may be
    shorter. Raises AudioDecodeError for empty, unreadable or audio-less input.
    """
    if chunk_seconds <= 0:
        raise ValueError("chunk_seconds must be positive")
    _reject_empty(source)
    chunk_samples = round(chunk_seconds * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    pending_samples = 0
    produced = False
    for piece in _decode_resampled(source):
        pending.append(piece)
        pending_samples += piece.size
        if pending_samples < chunk_samples:
            continue
        joined = np.concatenate(pending)
        whole_chunks = joined.size // chunk_samples * chunk_samples
        for start in range(0, whole_chunks, chunk_samples):
            yield joined[start : start + chunk_samples]
        produced = True
        rest = joined[whole_chunks:]
        pending, pending_samples = ([rest], rest.size) if rest.size else ([], 0)
    if pending_samples:
        yield np.concatenate(pending)
    elif not produced:
        raise AudioDecodeError("The file contains no decodable audio.")


def decode_audio(source: AudioSource) -> DecodedAudio:
    """Decode all of `source` into one 16 kHz mono float32 array."""
    samples = np.empty(0, dtype=np.float32)
    filled = 0
    for chunk in iter_audio_chunks(source):
        end = filled + chunk.size
        if end > samples.size:
            # ndarray.resize reallocates in place (mremap for large buffers), so
            # growing never holds the old and new signal side by side.
            samples.resize(max(end, 2 * samples.size), refcheck=False)
        samples[filled:end] = chunk
        filled = end
    samples.resize(filled, refcheck=False)
    return DecodedAudio(samples=samples, duration=filled / SAMPLE_RATE)


def _reject_empty(source: AudioSource) -> None:
    """Fail early with a clear message instead of FFmpeg's generic 'invalid data'."""
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
        except OSError as exc:
            raise AudioDecodeError("The audio file could not be read.") from exc
    elif source.seekable():
        position = source.tell()
        source.seek(0, os.SEEK_END)
        size = source.tell() - position
        source.seek(position)
    else:
        return
    if size == 0:
        raise AudioDecodeError("The audio file is empty.")


def _decode_resampled(source: AudioSource) -> Iterator[np.ndarray]:
    """Demux and decode the first audio stream, resampled to 16 kHz mono float32."""
    try:
        container = av.open(source, mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise AudioDecodeError(
            "The file could not be decoded: it is corrupt or not a supported audio or video format."
        ) from exc
    with container:
        if not container.streams.audio:
            raise AudioDecodeError("The file has no audio track.")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        try:
            for packet in container.demux(stream):
                for frame in _decode_packet(packet):
                    yield from _frames_to_arrays(resampler.resample(frame))
            # Flushing drains the samples the resampler holds back for filtering.
            yield from _frames_to_arrays(resampler.resample(None))
        except av.FFmpegError as exc:
            raise AudioDecodeError("The audio stream is corrupt and could not be decoded.") from exc


def _decode_packet(packet: av.Packet) -> list[av.AudioFrame]:
    # A damaged packet inside an otherwise readable stream is skipped, as
    # FFmpeg's own tools do, rather than failing a long recording for one glitch.
    try:
        return cast(list[av.AudioFrame], packet.decode())  # an audio stream's packet
    except av.InvalidDataError:
        return []


def _frames_to_arrays(frames: list[av.AudioFrame]) -> Iterator[np.ndarray]:
    for frame in frames:
        # Packed mono float frames come out as shape (1, samples).
        yield frame.to_ndarray().reshape(-1)
