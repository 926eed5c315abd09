"""The streaming encoders, checked by decoding their output with PyAV."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from hearth.audio.encode import CONTENT_TYPES, FORMATS, STREAMING_SIZE, AudioEncoder

RATE = 24_000
TONE_HZ = 440
# A decoder may add the encoder's priming or pad out the last frame: allow two
# of the largest frames (aac 1024, mp3 1152 samples at 24 kHz).
SLACK_SECONDS = 2 * 1152 / RATE


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def encode_in_chunks(fmt: str, audio: np.ndarray, chunks: int) -> list[bytes]:
    """Everything the encoder hands out, one entry per call, finish() last."""
    encoder = AudioEncoder(fmt, RATE)
    parts = [encoder.encode(chunk) for chunk in np.array_split(audio, chunks)]
    return [*parts, encoder.finish()]


def decode(fmt: str, data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples and their rate, as a client would read them."""
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32767, RATE
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])
    return samples.astype(np.float32), frames[0].sample_rate


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_rate_duration_and_pitch(fmt: str) -> None:
    audio = tone(2.5)
    data = b"".join(encode_in_chunks(fmt, audio, chunks=7))

    samples, rate = decode(fmt, data)

    # Opus runs at 48 kHz inside Ogg; everything else keeps the engine's rate
    assert rate == (48_000 if fmt == "opus" else RATE)
    assert len(samples) / rate == pytest.approx(2.5, abs=SLACK_SECONDS)
    assert dominant_hz(samples, rate) == pytest.approx(TONE_HZ, abs=2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_leave_as_chunks_are_encoded(fmt: str) -> None:
    parts = encode_in_chunks(fmt, tone(4.0), chunks=4)

    streamed = parts[:-1]
    assert all(streamed), f"an encode() call returned nothing: {[len(p) for p in parts]}"
    assert sum(map(len, streamed)) > sum(map(len, parts)) / 2


def test_wav_header_says_streaming_sizes() -> None:
    audio = tone(1.0)
    data = b"".join(encode_in_chunks("wav", audio, chunks=3))

    riff, riff_size, wave = struct.unpack_from("<4sI4s", data, 0)
    fmt_id, fmt_size, codec, channels, rate, byte_rate, align, bits = struct.unpack_from(
        "<4sIHHIIHH", data, 12
    )
    data_id, data_size = struct.unpack_from("<4sI", data, 36)
    assert (riff, wave, fmt_id, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert riff_size == data_size == STREAMING_SIZE
    pcm_16_mono = (16, 1, 1, RATE, RATE * 2, 2, 16)
    assert (fmt_size, codec, channels, rate, byte_rate, align, bits) == pcm_16_mono
    assert len(data) - 44 == 2 * len(audio)


def test_pcm_is_headerless_clipped_s16le() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0], np.float32)
    data = b"".join(encode_in_chunks("pcm", samples, chunks=2))

    assert np.frombuffer(data, "<i2").tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767]


@pytest.mark.parametrize("fmt", ["flac", "wav"])
def test_an_empty_stream_is_still_a_wellformed_file(fmt: str) -> None:
    data = AudioEncoder(fmt, RATE).finish()

    if fmt == "wav":
        assert len(data) == 44
    else:
        with av.open(io.BytesIO(data)) as container:
            assert container.streams.audio[0].codec_context.sample_rate > 0


def test_content_types_match_openai() -> None:
    assert CONTENT_TYPES == {
        "mp3": "audio/mpeg",
        "opus": "audio/opus",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }
    assert AudioEncoder("opus", RATE).content_type == "audio/opus"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="ogg"):
        AudioEncoder("ogg", RATE)
