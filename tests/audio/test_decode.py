"""Decoding uploads to 16 kHz mono float32, across every container the API accepts."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hearth.audio.decode import (
    SAMPLE_RATE,
    AudioDecodeError,
    decode_audio,
    iter_audio_chunks,
)

TONE_HZ = 440.0
SECONDS = 2.0

# (file name, container format, audio codec, encoder sample rate, layout)
CONTAINERS = [
    ("tone.wav", "wav", "pcm_s16le", 44_100, "stereo"),
    ("tone.flac", "flac", "flac", 48_000, "stereo"),
    ("tone.mp3", "mp3", "libmp3lame", 44_100, "stereo"),
    ("tone.mpga", "mp3", "libmp3lame", 22_050, "mono"),
    ("tone.mpeg", "mpeg", "mp2", 48_000, "stereo"),
    ("tone.ogg", "ogg", "libopus", 48_000, "stereo"),
    ("tone.webm", "webm", "libopus", 48_000, "mono"),
    ("tone.m4a", "ipod", "aac", 44_100, "stereo"),
    ("tone.mp4", "mp4", "aac", 32_000, "mono"),
]


def tone(rate: int, channels: int) -> np.ndarray:
    """A 440 Hz sine, the same in every channel, as planar float32 (channels, samples)."""
    t = np.arange(int(SECONDS * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    return np.tile(wave, (channels, 1))


def encode(
    path: Path, fmt: str, codec: str, rate: int, layout: str, *, video: bool = False
) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        if video:
            picture = out.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=rate, layout=layout)
        samples = tone(rate, 2 if layout == "stereo" else 1)
        # 20 ms frames; PyAV converts them to the encoder's sample format and frame size.
        step = rate // 50
        for index, start in enumerate(range(0, samples.shape[1], step)):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + step]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            frame.pts, frame.time_base = start, Fraction(1, rate)
            out.mux(sound.encode(frame))
            if video and index % 5 == 0:
                image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
                image.pts = index // 5
                out.mux(picture.encode(image))
        out.mux(sound.encode(None))
        if video:
            out.mux(picture.encode(None))
    return path


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * SAMPLE_RATE / samples.size)


@pytest.mark.parametrize(("name", "fmt", "codec", "rate", "layout"), CONTAINERS)
def test_every_accepted_container_decodes_to_16k_mono(tmp_path, name, fmt, codec, rate, layout):
    path = encode(tmp_path / name, fmt, codec, rate, layout)

    decoded = decode_audio(path)

    assert decoded.samples.dtype == np.float32
    assert decoded.samples.ndim == 1
    # Lossy codecs add priming and padding samples; the signal must be intact.
    assert decoded.duration == pytest.approx(SECONDS, abs=0.1)
    assert decoded.duration == decoded.samples.size / SAMPLE_RATE
    assert dominant_frequency(decoded.samples) == pytest.approx(TONE_HZ, abs=2)


def test_video_file_decodes_its_audio_track(tmp_path):
    path = encode(tmp_path / "clip.mp4", "mp4", "aac", 48_000, "stereo", video=True)

    decoded = decode_audio(path)

    assert decoded.duration == pytest.approx(SECONDS, abs=0.1)
    assert dominant_frequency(decoded.samples) == pytest.approx(TONE_HZ, abs=2)


def test_stereo_44k_is_downmixed_without_losing_level(tmp_path):
    path = encode(tmp_path / "stereo.wav", "wav", "pcm_s16le", 44_100, "stereo")

    samples = decode_audio(path).samples

    assert samples.size == pytest.approx(SECONDS * SAMPLE_RATE, abs=2)
    # The same signal in both channels must not cancel or clip when mixed.
    assert 0.3 < np.abs(samples).max() <= 1.0


def test_binary_file_object_decodes_like_a_path(tmp_path):
    path = encode(tmp_path / "tone.ogg", "ogg", "libopus", 48_000, "mono")

    from_path = decode_audio(path)
    with path.open("rb") as handle:
        from_handle = decode_audio(handle)

    np.testing.assert_array_equal(from_path.samples, from_handle.samples)


def test_chunks_are_bounded_and_cover_the_whole_signal(tmp_path):
    path = encode(tmp_path / "tone.flac", "flac", "flac", 48_000, "mono")

    chunks = list(iter_audio_chunks(path, chunk_seconds=0.5))

    assert all(chunk.size == SAMPLE_RATE // 2 for chunk in chunks[:-1])
    assert 0 < chunks[-1].size <= SAMPLE_RATE // 2
    np.testing.assert_array_equal(np.concatenate(chunks), decode_audio(path).samples)


def test_empty_file_is_rejected(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")

    with pytest.raises(AudioDecodeError, match="empty"):
        decode_audio(empty)
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_audio(io.BytesIO())


@pytest.mark.parametrize(
    "payload",
    [b"this is not audio at all " * 40, bytes(range(256)) * 20],
    ids=["text", "binary-noise"],
)
def test_corrupt_data_is_rejected(payload):
    with pytest.raises(AudioDecodeError, match="could not be decoded"):
        decode_audio(io.BytesIO(payload))


def test_truncated_file_is_rejected(tmp_path):
    path = encode(tmp_path / "tone.m4a", "ipod", "aac", 44_100, "stereo")
    # The MP4 index sits at the end; cut it off and nothing is playable.
    truncated = io.BytesIO(path.read_bytes()[: path.stat().st_size // 3])

    with pytest.raises(AudioDecodeError):
        decode_audio(truncated)


def test_video_without_audio_is_rejected(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        picture = out.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            image = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            image.pts = index
            out.mux(picture.encode(image))
        out.mux(picture.encode(None))

    with pytest.raises(AudioDecodeError, match="no audio track"):
        decode_audio(path)


def test_decode_error_is_a_value_error():
    assert issubclass(AudioDecodeError, ValueError)
