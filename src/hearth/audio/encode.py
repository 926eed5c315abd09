"""Streaming audio encoders for the speech endpoint, in-process with PyAV.

One `AudioEncoder` serves one response: chunks of float32 mono go in as they
are synthesized, and each call returns the bytes that are ready, so the
response streams. Everything is one continuous file, never per-chunk files
glued together.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import cast

import av
import numpy as np

# What OpenAI's speech endpoint answers with, per response_format.
CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FORMATS = tuple(CONTENT_TYPES)

# A streamed wav cannot know its length up front; 0xFFFFFFFF in the RIFF and
# data sizes is the convention players read as "until the stream ends".
STREAMING_SIZE = 0xFFFFFFFF


@dataclass(frozen=True)
class _Codec:
    container: str
    codec: str
    sample_format: str
    bit_rate: int | None = None
    # Opus only runs at 8, 12, 16, 24 or 48 kHz, and Ogg players expect 48
    sample_rate: int | None = None
    options: dict[str, str] = field(default_factory=dict)


_CODECS: dict[str, _Codec] = {
    "mp3": _Codec("mp3", "libmp3lame", "s16p", bit_rate=64_000),
    # Ogg closes a page each second by default, holding back up to a second of
    # encoded audio at every chunk's end; 200 ms pages keep the stream moving
    "opus": _Codec(
        "ogg",
        "libopus",
        "s16",
        bit_rate=32_000,
        sample_rate=48_000,
        options={"page_duration": "200000"},
    ),
    "aac": _Codec("adts", "aac", "fltp", bit_rate=64_000),
    "flac": _Codec("flac", "flac", "s16"),
}


class AudioEncoder:
    """Encode a stream of mono float32 chunks into one file of `fmt`."""

    def __init__(self, fmt: str, sample_rate: int) -> None:
        if fmt not in CONTENT_TYPES:
            raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.format = fmt
        self.content_type = CONTENT_TYPES[fmt]
        self._sample_rate = sample_rate
        self._muxer = _Muxer(_CODECS[fmt], sample_rate) if fmt in _CODECS else None
        self._header = _wav_header(sample_rate) if fmt == "wav" else b""

    def encode(self, chunk: np.ndarray) -> bytes:
        """Encode one chunk of samples in [-1, 1]; return the bytes ready so far."""
        if self._muxer is not None:
            return self._muxer.encode(chunk)
        header, self._header = self._header, b""
        return header + _to_s16le(chunk)

    def finish(self) -> bytes:
        """Flush the encoder and close the file; return its last bytes."""
        if self._muxer is not None:
            return self._muxer.finish()
        header, self._header = self._header, b""
        return header


class _Sink:
    """A write-only file for the muxer that hands its bytes out on demand.

    Having no seek makes muxers write for a stream: no going back to patch
    headers once the bytes have been sent.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class _Muxer:
    """A PyAV container writing one audio stream into a `_Sink`."""

    def __init__(self, codec: _Codec, sample_rate: int) -> None:
        self._sink = _Sink()
        rate = codec.sample_rate or sample_rate
        # flush_packets hands each packet to the sink at once instead of
        # holding it in libavformat's 32 KiB write buffer
        self._container = av.open(
            self._sink,
            mode="w",
            format=codec.container,
            options={"flush_packets": "1", **codec.options},
        )
        self._stream = cast(av.AudioStream,
                            self._container.add_stream(codec.codec, rate=rate, layout="mono"))
        self._stream.format = codec.sample_format
        if codec.bit_rate:
            self._stream.bit_rate = codec.bit_rate
        # Opening the codec now settles its frame size for the resampler, and
        # writes the header even if no audio ever follows
        self._container.start_encoding()
        # Fixed-frame codecs (mp3 1152, aac 1024, opus 960) reject other sizes;
        # the resampler cuts frames to size and converts rate and format
        self._resampler = av.AudioResampler(
            format=codec.sample_format,
            layout="mono",
            rate=rate,
            frame_size=self._stream.codec_context.frame_size or None,
        )
        self._input_rate = sample_rate

    def encode(self, chunk: np.ndarray) -> bytes:
        samples = np.ascontiguousarray(chunk, dtype=np.float32).reshape(1, -1)
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = self._input_rate
            self._write(self._resampler.resample(frame))
        return self._sink.drain()

    def finish(self) -> bytes:
        self._write(self._resampler.resample(None))
        self._container.mux(self._stream.encode(None))
        self._container.close()
        return self._sink.drain()

    def _write(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self._container.mux(self._stream.encode(frame))


def _to_s16le(chunk: np.ndarray) -> bytes:
    clipped = np.clip(np.asarray(chunk, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767).round().astype("<i2").tobytes()


def _wav_header(sample_rate: int) -> bytes:
    """A RIFF/WAVE header for 16-bit mono PCM of unknown length."""
    channels, bits = 1, 16
    block_align = channels * bits // 8
    return (
        struct.pack("<4sI4s", b"RIFF", STREAMING_SIZE, b"WAVE")
        + struct.pack(
            "<4sIHHIIHH",
            b"fmt ",
            16,
            1,  # PCM
            channels,
            sample_rate,
            sample_rate * block_align,
            block_align,
            bits,
        )
        + struct.pack("<4sI", b"data", STREAMING_SIZE)
    )
