"""The Kokoro engine, run for real on the int8 model."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hearth.engines.kokoro import (
    FIRST_PIECE_TOKENS,
    MAX_TOKENS,
    OPENAI_VOICES,
    SAMPLE_RATE,
    KokoroEngine,
    NothingToSay,
    UnknownVoice,
)
from tests.conftest import pulled_model_dir

SENTENCES = "The lamp was lit at dusk. Nobody spoke for a while, and the kettle began to sing!"


@pytest.fixture(scope="session")
def engine() -> KokoroEngine:
    return KokoroEngine(pulled_model_dir("kokoro-82m"), threads=2)


def seconds(chunks) -> float:
    return sum(len(chunk) for chunk in chunks) / SAMPLE_RATE


def test_openai_voices_map_to_distinct_english_voices(engine: KokoroEngine) -> None:
    assert len(OPENAI_VOICES) == 13
    targets = list(OPENAI_VOICES.values())
    assert len(set(targets)) == 13
    assert all(target in engine.voices() for target in targets)
    assert {engine.language_of(target) for target in targets} <= {"en-us", "en-gb"}


def test_resolve_voice_takes_openai_and_native_names(engine: KokoroEngine) -> None:
    assert engine.resolve_voice("fable") == "bm_fable"
    assert engine.resolve_voice("ff_siwis") == "ff_siwis"
    with pytest.raises(UnknownVoice) as error:
        engine.resolve_voice("nobody")
    assert {"alloy", "cedar", "af_heart", "zm_yunxi"} <= set(error.value.valid)


def test_first_piece_is_short_so_streaming_starts_early(engine: KokoroEngine) -> None:
    first = "The quick brown fox jumps over the lazy dog near the riverbank, and then it runs."
    utterance = engine.prepare(f"{first} It is gone.", "alloy")
    assert len(utterance.pieces[0]) <= FIRST_PIECE_TOKENS < len(engine._phonemize(first, "en-us"))
    assert " ".join(utterance.pieces[:-1]) == engine._phonemize(first, "en-us")
    # A sentence alone, or a short first one, is not worth cutting.
    assert len(engine.prepare(first, "alloy").pieces) == 1
    assert engine.prepare("Good morning, how are you? Fine.", "alloy").pieces[0] == \
        engine._phonemize("Good morning, how are you?", "en-us")


def test_bad_arguments_fail_before_any_synthesis(engine: KokoroEngine) -> None:
    with pytest.raises(ValueError, match="speed"):
        engine.synthesize("Hello.", "alloy", speed=4.5)
    with pytest.raises(UnknownVoice):
        engine.synthesize("Hello.", "nobody")
    with pytest.raises(NothingToSay):
        engine.synthesize("... !!!", "alloy")


def test_one_chunk_per_sentence_with_a_pause_between(engine: KokoroEngine) -> None:
    chunks = list(engine.synthesize(SENTENCES, "alloy"))

    assert len(chunks) == 2
    assert all(chunk.dtype == np.float32 and chunk.ndim == 1 for chunk in chunks)
    # The sentence pause (0.25 s) closes the first chunk, not the last
    assert not chunks[0][-int(0.2 * SAMPLE_RATE) :].any()
    assert chunks[1][-int(0.02 * SAMPLE_RATE) :].any()


def run_on_sentence(length: int) -> str:
    """Words with no punctuation at all, about `length` characters."""
    words = ["river", "stone", "garden", "window", "yellow", "morning", "quiet", "bridge", "silver", "lantern"]
    rng = random.Random(7)
    return " ".join(rng.choice(words) for _ in range(length // 6))[:length].rsplit(" ", 1)[0]


LONG_TEXTS = {
    "many sentences": " ".join([SENTENCES, "Was it late? Perhaps; nobody knew."] * 45)[:4000],
    "one run-on sentence": run_on_sentence(1500),
}


@pytest.mark.parametrize("text", LONG_TEXTS.values(), ids=LONG_TEXTS.keys())
def test_long_text_is_split_under_the_window_without_losing_any(
    engine: KokoroEngine, text: str
) -> None:
    pieces = engine._pieces(text, "en-us")

    assert len(pieces) > 1
    assert max(map(len, pieces)) <= MAX_TOKENS
    assert " ".join(pieces) == engine._phonemize(text, "en-us")


def test_sentence_past_the_window_is_spoken_in_full(engine: KokoroEngine) -> None:
    # About 800 phonemes: past 510 the model would drop the rest unless cut.
    # Longer inputs split the same way (above); this keeps the run short.
    sentence = run_on_sentence(700)
    # Kokoro speaks long pieces a little faster than short ones: sample a long opening.
    opening = sentence[:350].rsplit(" ", 1)[0]

    chunks = list(engine.synthesize(sentence, "alloy"))
    per_char = seconds(engine.synthesize(opening, "alloy")) / len(opening)

    # Two pieces under the window, the first with its opening phrase spoken apart.
    assert len(chunks) == 3
    assert seconds(chunks) == pytest.approx(per_char * len(sentence), rel=0.2)


@pytest.fixture(scope="session")
def normal_duration(engine: KokoroEngine) -> float:
    return seconds(engine.synthesize(SENTENCES, "nova"))


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_divides_duration(engine: KokoroEngine, normal_duration: float, speed: float) -> None:
    duration = seconds(engine.synthesize(SENTENCES, "nova", speed=speed))

    assert duration == pytest.approx(normal_duration / speed, rel=0.15)


def test_distinct_voices_sound_different(engine: KokoroEngine) -> None:
    text = "Good morning, how are you?"
    spectra = [
        _spectrum(np.concatenate(list(engine.synthesize(text, voice))))
        for voice in ("alloy", "echo", "fable")
    ]

    for i, first in enumerate(spectra):
        for second in spectra[i + 1 :]:
            assert np.abs(first - second).sum() > 0.2


def test_native_voices_speak_their_language(engine: KokoroEngine) -> None:
    chunks = list(engine.synthesize("Buenos días, ¿cómo estás?", "ef_dora"))

    assert engine.language_of("ef_dora") == "es"
    assert 0.5 < seconds(chunks) < 5


def _spectrum(audio: np.ndarray, bands: int = 64) -> np.ndarray:
    """Share of energy in each of `bands` frequency bands: a voice's timbre, roughly."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    energy = np.array([band.sum() for band in np.array_split(power, bands)])
    return energy / energy.sum()
