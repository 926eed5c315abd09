"""The Whisper engine on a real model and real (Kokoro) speech; no mocks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import srt
import webvtt
from faster_whisper.feature_extractor import FeatureExtractor

from hearth.audio.decode import DecodedAudio, decode_audio
from hearth.audio.encode import AudioEncoder
from hearth.engines import whisper
from hearth.engines.kokoro import KokoroEngine
from hearth.engines.whisper import (
    AUTO_VAD,
    TranscriptionOptions,
    UnsupportedLanguageError,
    UnsupportedTaskError,
    VadParams,
    WhisperEngine,
    WhisperOptionError,
    WindowedFeatureExtractor,
    quiet_windows,
)
from hearth.transcriptions.formats import render_srt, render_verbose_json, render_vtt, transcript_text
from tests.conftest import pulled_model_dir

ENGLISH = "The quick brown fox jumps over the lazy dog. Please call me tomorrow morning."
# Spoken one after another, they make audio several (test-sized) windows long.
LONG_PARTS = (
    ("Seven purple elephants walked slowly across the frozen river at midnight.",
     {"purple", "elephants", "frozen", "river", "midnight"}),
    ("My grandmother bakes chocolate cookies every Sunday afternoon.",
     {"grandmother", "chocolate", "cookies", "sunday", "afternoon"}),
    ("The library closes early on holidays, so return your books before Friday.",
     {"library", "holidays", "books", "friday"}),
    ("Bright orange lanterns lit the harbor while the fishermen sang.",
     {"orange", "lanterns", "harbor", "fishermen"}),
)
SPANISH = "Buenos días. El perro come pan en la casa."


@pytest.fixture(scope="session")
def voice_engine() -> KokoroEngine:
    return KokoroEngine(pulled_model_dir("kokoro-82m"))


def speak(tts: KokoroEngine, path: Path, voice: str, text: str, *,
          gap_seconds: float = 0.0) -> DecodedAudio:
    encoder = AudioEncoder("wav", tts.sample_rate)
    with path.open("wb") as out:
        for chunk in tts.synthesize(text, voice):
            out.write(encoder.encode(chunk))
        out.write(encoder.finish())
    audio = decode_audio(path)
    if not gap_seconds:
        return audio
    silence = np.zeros(round(gap_seconds * 16_000), dtype=np.float32)
    samples = np.concatenate([silence, audio.samples, silence])
    return DecodedAudio(samples, samples.size / 16_000)


@pytest.fixture(scope="session")
def engine() -> WhisperEngine:
    return WhisperEngine(pulled_model_dir("whisper-base"))


@pytest.fixture(scope="session")
def english(tmp_path_factory, voice_engine) -> DecodedAudio:
    return speak(voice_engine, tmp_path_factory.mktemp("speech") / "en.wav", "af_heart", ENGLISH)


@pytest.fixture(scope="session")
def spanish(tmp_path_factory, voice_engine) -> DecodedAudio:
    return speak(voice_engine, tmp_path_factory.mktemp("speech") / "es.wav", "ef_dora", SPANISH)


def words_of(text: str) -> set[str]:
    return {word.strip(".,!?").lower() for word in text.split()}


def test_transcribes_spoken_english(engine, english):
    result = engine.transcribe(english.samples, TranscriptionOptions())
    segments = list(result.segments)

    assert result.info.language == "en"
    assert result.info.language_name == "english"
    assert result.info.duration == pytest.approx(english.duration)
    assert {"quick", "brown", "fox", "lazy", "dog", "call", "tomorrow", "morning"} <= words_of(
        transcript_text(segments)
    )
    assert [s.id for s in segments] == list(range(len(segments)))
    for s in segments:
        assert 0 <= s.start < s.end <= english.duration
        assert s.temperature == 0.0 and s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1
        assert s.tokens[0] >= 50364 and s.words is None and s.logprobs is None


def test_word_timestamps_are_monotonic_inside_the_audio(engine, english):
    options = TranscriptionOptions(language="en", word_timestamps=True)
    segments = list(engine.transcribe(english.samples, options).segments)

    words = [word for s in segments for word in s.words]
    assert {"quick", "fox", "dog"} <= {w.word.strip(" .,").lower() for w in words}
    times = [t for word in words for t in (word.start, word.end)]
    assert times == sorted(times)
    assert 0 <= times[0] and times[-1] <= english.duration
    body = render_verbose_json(
        engine.transcribe(english.samples, options).info, segments, include_words=True
    )
    assert len(body["words"]) == len(words)


def test_srt_and_vtt_parse_back_with_monotonic_times(engine, english):
    result = engine.transcribe(english.samples, TranscriptionOptions(language="en"))
    segments = list(result.segments)

    cues = list(srt.parse(render_srt(segments)))
    captions = webvtt.from_string(render_vtt(segments)).captions

    assert len(cues) == len(captions) == len(segments)
    bounds = [t for cue in cues for t in (cue.start.total_seconds(), cue.end.total_seconds())]
    assert bounds == sorted(bounds) and bounds[-1] <= english.duration
    vtt_bounds = [t for c in captions for t in (c.start_in_seconds, c.end_in_seconds)]
    assert vtt_bounds == sorted(vtt_bounds) and vtt_bounds[-1] <= english.duration
    assert " ".join(c.text for c in captions) == transcript_text(segments)


def test_logprobs_are_the_decoders_own_token_probabilities(engine, english):
    options = TranscriptionOptions(language="en", logprobs=True)
    segments = list(engine.transcribe(english.samples, options).segments)

    for s in segments:
        entries = s.logprobs
        assert entries and all(e.logprob <= 0 for e in entries)
        assert "".join(e.token for e in entries) == s.text
        assert all(bytes(e.bytes).decode() == e.token for e in entries)
    # Text tokens are all but each segment's two timestamps. The window's whole
    # decode (timestamps and end-of-text included) scores avg_logprob per token,
    # so its text tokens alone can be no less likely than that total.
    window = [s for s in segments if s.seek == segments[0].seek]
    assert all(len(s.logprobs) == len(s.tokens) - 2 for s in window)
    decoded = sum(len(s.tokens) for s in window) + 1
    text_logprob = sum(e.logprob for s in window for e in s.logprobs)
    assert window[0].avg_logprob * decoded <= text_logprob < 0


def test_translates_spanish_to_english(engine, spanish):
    result = engine.transcribe(
        spanish.samples, TranscriptionOptions(task="translate", language="es")
    )
    text = transcript_text(result.segments)

    assert result.info.task == "translate"
    words = words_of(text)
    # "Casa" is rendered as house or home depending on the decoder's build; either is right.
    assert "dog" in words and words & {"house", "home"}, text


def test_transcribes_spanish_in_spanish(engine, spanish):
    result = engine.transcribe(spanish.samples, TranscriptionOptions(language="es"))

    assert {"perro", "casa"} <= words_of(transcript_text(result.segments))
    assert result.info.language_name == "spanish"


def test_fixed_temperature_and_prompt_are_used(engine, english):
    options = TranscriptionOptions(language="en", temperature=0.3, prompt="Quick foxes.")
    result = engine.transcribe(english.samples, options)
    segments = list(result.segments)

    assert {s.temperature for s in segments} == {0.3}
    assert result.info.prompt_tokens > 0


def test_vad_skips_silence_and_keeps_times_in_the_original_audio(engine, voice_engine, tmp_path):
    padded = speak(voice_engine, tmp_path / "padded.wav", "af_heart", ENGLISH, gap_seconds=3.0)

    for vad in (AUTO_VAD, VadParams(threshold=0.6, prefix_padding_ms=200, silence_duration_ms=300)):
        result = engine.transcribe(padded.samples, TranscriptionOptions(language="en", vad=vad))
        segments = list(result.segments)

        assert result.info.duration_after_vad < result.info.duration - 4
        assert {"fox", "tomorrow", "morning"} <= words_of(transcript_text(segments))
        assert segments[0].start >= 2.0 and segments[-1].end <= padded.duration - 2.0


def test_segments_are_lazy_and_can_be_abandoned(engine, english):
    result = engine.transcribe(english.samples, TranscriptionOptions(language="en"))

    first = next(result.segments)
    result.segments.close()

    assert first.id == 0
    assert next(result.segments, None) is None


@pytest.mark.parametrize("code", ["xx", "english", "zz-ZZ"])
def test_unknown_language_is_rejected(engine, english, code):
    with pytest.raises(UnsupportedLanguageError, match="Unsupported language"):
        engine.transcribe(english.samples, TranscriptionOptions(language=code))


@pytest.mark.parametrize("temperature", [-0.1, 1.5, math.nan])
def test_temperature_outside_zero_to_one_is_rejected(engine, english, temperature):
    with pytest.raises(WhisperOptionError, match="temperature"):
        engine.transcribe(english.samples, TranscriptionOptions(temperature=temperature))


def test_english_only_model_refuses_other_languages_and_translation(english):
    model = WhisperEngine(pulled_model_dir("whisper-tiny.en"))

    assert model.languages == ("en",)
    with pytest.raises(UnsupportedLanguageError, match="English-only"):
        model.transcribe(english.samples, TranscriptionOptions(language="es"))
    with pytest.raises(UnsupportedTaskError, match="English-only"):
        model.transcribe(english.samples, TranscriptionOptions(task="translate"))
    text = transcript_text(model.transcribe(english.samples, TranscriptionOptions()).segments)
    assert {"fox", "tomorrow", "morning"} <= words_of(text)


def test_missing_model_directory_never_reaches_for_a_hub(tmp_path):
    with pytest.raises(FileNotFoundError):
        WhisperEngine(tmp_path / "nowhere")


@pytest.mark.parametrize("seconds", [12.0, 30.02, 95.3])
def test_windowed_features_equal_whole_signal_features(seconds: float) -> None:
    rng = np.random.default_rng(7)
    audio = rng.standard_normal(int(seconds * 16000)).astype(np.float32) * 0.1
    audio[:80000] *= np.sin(np.arange(80000) / 30)  # a loud start, as speech has
    whole, windowed = FeatureExtractor()(audio), WindowedFeatureExtractor()(audio)
    assert windowed.shape == whole.shape
    np.testing.assert_allclose(windowed, whole, atol=1e-6)


def test_windows_are_cut_at_the_quietest_point_and_lose_nothing() -> None:
    rate, window = 16_000, 16_000 * 12
    rng = np.random.default_rng(3)
    audio = rng.standard_normal(rate * 40).astype(np.float32) * 0.3
    audio[rate * 9 : rate * 10] = 0.0  # a pause 9 to 10 s in: inside the first window's tail
    chunks = np.array_split(audio, 37)  # uneven chunks, as a decoder yields them

    windows = list(quiet_windows(chunks, window_samples=window))

    np.testing.assert_array_equal(np.concatenate(windows), audio)
    assert all(w.size <= window for w in windows) and len(windows) >= 4
    assert rate * 9 <= windows[0].size <= rate * 10
    assert [w.size for w in quiet_windows([audio[:window]], window_samples=window)] == [window]
    assert [w.size for w in quiet_windows([], window_samples=window)] == [0]


@pytest.fixture(scope="session")
def long_speech(tmp_path_factory, voice_engine) -> DecodedAudio:
    folder = tmp_path_factory.mktemp("long")
    parts = [speak(voice_engine, folder / f"{index}.wav", "af_heart", text, gap_seconds=1.0)
             for index, (text, _) in enumerate(LONG_PARTS)]
    samples = np.concatenate([part.samples for part in parts])
    return DecodedAudio(samples, samples.size / 16_000)


def test_long_audio_is_transcribed_window_by_window_as_one_recording(
        engine, long_speech, monkeypatch):
    window_seconds = 10.0
    monkeypatch.setattr(whisper, "WINDOW_SECONDS", window_seconds)
    assert long_speech.duration > 2 * window_seconds  # so three windows at least
    chunks = np.array_split(long_speech.samples, 50)

    result = engine.transcribe_stream(iter(chunks), TranscriptionOptions(word_timestamps=True))
    first_window = result.info.duration
    segments = list(result.segments)

    assert first_window <= window_seconds < result.info.duration
    assert result.info.duration == pytest.approx(long_speech.duration)
    assert result.info.duration_after_vad == pytest.approx(long_speech.duration)
    assert result.info.language == "en"
    assert [s.id for s in segments] == list(range(len(segments)))
    seeks = [s.seek for s in segments]
    assert seeks == sorted(seeks) and seeks[-1] >= first_window * 100
    bounds = [t for s in segments for t in (s.start, s.end)]
    assert bounds == sorted(bounds) and 0 <= bounds[0] and bounds[-1] <= long_speech.duration
    word_times = [t for s in segments for w in s.words for t in (w.start, w.end)]
    assert word_times == sorted(word_times) and word_times[-1] <= long_speech.duration
    heard = words_of(transcript_text(segments))
    for _, expected in LONG_PARTS:
        assert expected <= heard
