"""The Jigsaw toxic-comment BiLSTM, run in numpy over its Keras weights.

The network (PyPI ``toxic-comment-classifier`` 0.3.0) was trained on the Jigsaw
Wikipedia talk-page comments: embedding (20,000 words x 50) -> bidirectional
LSTM (50 units each way) -> max over time -> dense 50 ReLU -> 6 sigmoids. It
ships for TensorFlow, a 2.4 GB dependency for 5 MB of weights, so the forward
pass is written out here instead, following Keras's LSTM (gates i, f, c, o;
sigmoid recurrent activation, tanh activation).
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

WEIGHTS_FILE = "model.weights.h5"
TOKENIZER_FILE = "tokenizer.pickle"
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")

SEQUENCE_LENGTH = 100  # the model reads the last 100 known words, left-padded with 0
VOCAB_SIZE = 20_000  # only the 20,000 most frequent training words have embeddings


class _KerasTokenizerState:
    """Receives a pickled ``keras...Tokenizer``'s attributes without importing Keras."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


# The only classes a Keras tokenizer pickle needs; a pickle can name any callable.
_TOKENIZER_CLASSES: dict[tuple[str, str], Any] = {
    ("keras.src.legacy.preprocessing.text", "Tokenizer"): _KerasTokenizerState,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "int"): int,
}


class _TokenizerUnpickler(pickle.Unpickler):
    """Unpickles the Keras tokenizer and refuses any other class."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _TOKENIZER_CLASSES[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"unexpected class {module}.{name} in tokenizer") from None


class WordTokenizer:
    """Keras's ``Tokenizer.texts_to_sequences`` with the Jigsaw vocabulary."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as handle:
            state = _TokenizerUnpickler(handle).load()
        self._word_index = {w: i for w, i in state.word_index.items() if i < state.num_words}
        self._split = state.split
        self._table = str.maketrans({c: state.split for c in state.filters})
        self._lower = state.lower

    def encode(self, text: str) -> list[int]:
        if self._lower:
            text = text.lower()
        words = text.translate(self._table).split(self._split)
        return [i for w in words if w and (i := self._word_index.get(w)) is not None]


class ToxicityModel:
    """Scores texts on the six Jigsaw labels, each in [0, 1]."""

    def __init__(self, model_dir: Path) -> None:
        self._tokenizer = WordTokenizer(model_dir / TOKENIZER_FILE)
        with h5py.File(model_dir / WEIGHTS_FILE, "r") as h5:
            layers = h5["layers"]
            self._embedding = _array(layers["embedding/vars/0"])
            self._forward = _lstm_weights(layers["bidirectional/forward_layer/cell/vars"])
            self._backward = _lstm_weights(layers["bidirectional/backward_layer/cell/vars"])
            self._hidden = (_array(layers["dense/vars/0"]), _array(layers["dense/vars/1"]))
            self._output = (_array(layers["dense_1/vars/0"]), _array(layers["dense_1/vars/1"]))

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """An array (len(texts), 6) of probabilities in ``LABELS`` order."""
        if not texts:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        ids = np.stack([_left_pad(self._tokenizer.encode(t)) for t in texts])
        x = self._embedding[ids]  # (batch, time, 50)
        # Global max pooling ignores time order, so the backward pass's outputs
        # need no re-reversal before being pooled with the forward pass's.
        pooled = np.concatenate(
            [_lstm_max(x, *self._forward), _lstm_max(x[:, ::-1], *self._backward)], axis=1
        )
        hidden = np.maximum(pooled @ self._hidden[0] + self._hidden[1], 0.0)
        return _sigmoid(hidden @ self._output[0] + self._output[1])


def _array(dataset: h5py.Dataset) -> np.ndarray:
    return np.asarray(dataset, dtype=np.float32)


def _lstm_weights(cell: h5py.Group) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _array(cell["0"]), _array(cell["1"]), _array(cell["2"])


def _left_pad(ids: list[int]) -> np.ndarray:
    # Keras pad_sequences defaults: keep the last words, pad at the front.
    ids = ids[-SEQUENCE_LENGTH:]
    padded = np.zeros(SEQUENCE_LENGTH, dtype=np.int64)
    padded[SEQUENCE_LENGTH - len(ids) :] = ids
    return padded


def _lstm_max(
    x: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray
) -> np.ndarray:
    """Runs one LSTM direction over (batch, time, features); max of its outputs over time."""
    units = recurrent.shape[0]
    inputs = x @ kernel + bias  # every step's input projection at once
    h = np.zeros((x.shape[0], units), dtype=np.float32)
    c = np.zeros_like(h)
    best = np.full_like(h, -np.inf)
    for step in range(x.shape[1]):
        z = inputs[:, step] + h @ recurrent
        i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        np.maximum(best, h, out=best)
    return best


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
