"""The embedding engine, run for real on all-MiniLM-L6-v2 (int8 ONNX)."""

from __future__ import annotations

import numpy as np
import pytest

from hearth.engines.embeddings import EmbeddingEngine, InputTooLong, InvalidTokens
from tests.conftest import pulled_model_dir


@pytest.fixture(scope="session")
def engine() -> EmbeddingEngine:
    return EmbeddingEngine(pulled_model_dir("all-minilm-l6-v2"), threads=2)


def test_shape_and_limits(engine: EmbeddingEngine) -> None:
    assert engine.dimensions == 384
    assert (engine.window, engine.max_tokens) == (254, 8192)


def test_vectors_are_unit_length(engine: EmbeddingEngine) -> None:
    vectors = engine.embed(["A short sentence.", "Another, somewhat longer sentence about tea."])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paraphrase_ranks_above_unrelated_sentence(engine: EmbeddingEngine) -> None:
    query, paraphrase, unrelated = engine.embed(
        [
            "How do I reset my password?",
            "I forgot my login password and need to change it.",
            "The orchestra played Beethoven's fifth symphony.",
        ]
    )
    assert query @ paraphrase > 0.5
    assert query @ paraphrase > query @ unrelated + 0.3


def test_token_arrays_embed_like_their_text(engine: EmbeddingEngine) -> None:
    texts = ["Token ids in, vectors out.", "Same vectors either way"]
    np.testing.assert_allclose(engine.embed(engine.tokenize(texts)), engine.embed(texts), atol=1e-6)


def test_batching_does_not_change_a_vector(engine: EmbeddingEngine) -> None:
    texts = ["short", "a much longer sentence that pads the batch out well beyond the first one"]
    alone = engine.embed(texts[:1])[0]
    np.testing.assert_allclose(engine.embed(texts)[0], alone, atol=1e-5)


def test_dimensions_truncate_and_renormalize(engine: EmbeddingEngine) -> None:
    full = engine.embed(["Matryoshka-style truncation"])[0]
    short = engine.embed(["Matryoshka-style truncation"], dimensions=64)[0]
    assert short.shape == (64,)
    np.testing.assert_allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)
    with pytest.raises(ValueError):
        engine.embed(["too many"], dimensions=385)


def test_a_long_input_is_the_length_weighted_mean_of_its_windows(engine: EmbeddingEngine) -> None:
    """Past the model's 254 tokens an input is embedded in consecutive windows; its vector is
    their token-weighted mean, normalized, and it stays close to the text it is about."""
    topic = "Tea is grown on terraced hillsides, picked by hand and dried in the sun. "
    text = topic * 40 + "The harvest ends in autumn."
    ids = engine.tokenize([text])[0]
    windows = [ids[start:start + 254] for start in range(0, len(ids), 254)]
    assert len(windows) > 2

    (vector,) = engine.embed([text])
    parts = engine.embed(windows)
    expected = (parts * np.array([[len(w)] for w in windows])).sum(axis=0)
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
    about_tea, about_music = engine.embed(["How is tea harvested?", "A symphony orchestra"])
    assert vector @ about_tea > vector @ about_music + 0.2
    # Joined with short inputs it is the same vector.
    np.testing.assert_allclose(engine.embed(["short", text])[1], vector, atol=1e-5)


def test_inputs_over_openais_8192_tokens_are_refused_in_its_own_count(engine: EmbeddingEngine) -> None:
    """The limit is OpenAI's, counted in cl100k_base tokens: code or German that splits into more
    WordPiece tokens than that is still taken when OpenAI would take it."""
    code = "x_value_total=compute_sum(items)\n" * 800  # 9600 WordPiece tokens, 6400 of OpenAI's
    assert len(engine.tokenize([code])[0]) > 8192
    assert engine.openai_tokens is not None and engine.openai_tokens.count(code) <= 8192
    assert engine.embed([code]).shape == (1, 384)
    with pytest.raises(InputTooLong) as caught:
        engine.embed(["fine", " ".join(["word"] * 8200)])
    assert (caught.value.index, caught.value.n_tokens, caught.value.limit) == (1, 8200, 8192)
    assert len(engine.embed([" ".join(["word"] * 8192)])) == 1


def test_a_huge_input_is_refused_before_it_is_tokenized(engine: EmbeddingEngine) -> None:
    """Megabytes of text are refused from a count of their first words, not tokenized whole."""
    with pytest.raises(InputTooLong) as caught:
        engine.embed(["fine", "word " * 2_000_000])
    assert caught.value.index == 1 and "more than 32768 tokens" in str(caught.value)


def test_token_ids_outside_the_vocabulary_are_refused(engine: EmbeddingEngine) -> None:
    with pytest.raises(InvalidTokens):
        engine.embed([[101, engine.vocab_size]])
    with pytest.raises(TypeError):
        engine.embed(["text", [1, 2, 3]])


def test_split_cuts_at_token_boundaries(engine: EmbeddingEngine) -> None:
    text = " ".join(f"word{i}" for i in range(200))
    pieces = engine.split(text, 100)
    assert "".join(pieces) == text
    assert all(len(ids) <= 100 for ids in engine.tokenize(pieces))


def test_batch_of_2048_short_inputs(engine: EmbeddingEngine) -> None:
    texts = [f"item number {i}" for i in range(2048)]
    vectors = engine.embed(texts)
    assert vectors.shape == (2048, 384)
    assert sum(len(ids) for ids in engine.token_ids(texts)) > 2048
