"""Decoding helpers for checking audio the server returns."""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np


@dataclass
class Decoded:
    samples: np.ndarray  # float32 mono
    sample_rate: int
    codec: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


def decode(data: bytes, *, container_format: str | None = None) -> Decoded:
    with av.open(io.BytesIO(data), format=container_format) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        codec = stream.codec_context.name
        chunks = [frame.to_ndarray().astype(np.float32).reshape(frame.layout.nb_channels, -1)
                  .mean(axis=0) if frame.format.is_planar else
                  frame.to_ndarray().astype(np.float32).reshape(-1, frame.layout.nb_channels)
                  .mean(axis=1)
                  for frame in container.decode(stream)]
    return Decoded(np.concatenate(chunks) if chunks else np.zeros(0, np.float32), rate, codec)


def decode_pcm16(data: bytes, sample_rate: int = 24000) -> Decoded:
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return Decoded(samples, sample_rate, "pcm_s16le")
