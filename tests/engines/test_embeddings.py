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
    assert engine.max_tokens == 254


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


def test_too_long_input_is_refused(engine: EmbeddingEngine) -> None:
    with pytest.raises(InputTooLong) as caught:
        engine.embed(["fine", "word " * 300])
    assert (caught.value.index, caught.value.n_tokens, caught.value.limit) == (1, 300, 254)
    assert len(engine.embed(["word " * 254])) == 1


def test_a_huge_input_is_refused_before_it_is_tokenized(engine: EmbeddingEngine) -> None:
    """Megabytes of text are refused from a count of their first words, not tokenized whole."""
    with pytest.raises(InputTooLong) as caught:
        engine.embed(["fine", "word " * 2_000_000])
    assert caught.value.index == 1 and "more than 1016 tokens" in str(caught.value)


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
