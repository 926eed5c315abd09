"""Sentence embeddings: all-MiniLM-L6-v2 over onnxruntime, mean-pooled and L2-normalized.

The graph is the int8 ONNX export of the sentence-transformers model and the
tokenizer is the model's own WordPiece ``tokenizer.json``; together they give
vectors within cosine 0.996 of the float32 PyTorch model. The engine is
synchronous: the model runner calls it from a worker thread.

The model reads 254 tokens at a time; OpenAI takes inputs of up to 8192. A
longer input is cut into consecutive windows of the model's size, each
window is embedded, and the input's vector is the mean of its windows'
vectors weighted by their token counts, normalized again: every part of the
text counts in proportion to its length, which is how OpenAI's own guide
embeds texts longer than a model reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from hearth.engines.openai_tokens import RANKS_FILE, Cl100k

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"

# sentence-transformers runs this model with a 256-token window ([CLS] and [SEP]
# included); longer inputs are embedded window by window, never cut short.
WINDOW = 256
SPECIAL_TOKENS = 2
# OpenAI's limit on one input, in its cl100k_base tokens.
MAX_INPUT_TOKENS = 8192

# Inputs are sorted by length before batching so each batch pads to nearly its
# own length; 64 keeps a batch's activations small while amortizing each run.
BATCH_SIZE = 64

TokenInput = Sequence[int]


# Inputs with this many times more words than the limit are refused untokenized.
_SURELY_TOO_LONG = 4


class InputTooLong(ValueError):
    """An input holds more tokens than the model reads."""

    def __init__(self, index: int, n_tokens: int, limit: int, *, at_least: bool = False) -> None:
        counted = f"more than {n_tokens - 1}" if at_least else str(n_tokens)
        super().__init__(f"Input {index} has {counted} tokens; at most {limit} tokens are allowed per input.")
        self.index = index
        self.n_tokens = n_tokens
        self.limit = limit


class InvalidTokens(ValueError):
    """A token-array input holds ids outside the model's vocabulary."""

    def __init__(self, index: int, vocab_size: int) -> None:
        super().__init__(
            f"Input {index} holds token ids outside this model's vocabulary [0, {vocab_size})."
        )
        self.index = index
        self.vocab_size = vocab_size


class EmbeddingEngine:
    """all-MiniLM-L6-v2: 384-dimensional unit vectors for texts or token-id arrays."""

    def __init__(self, model_dir: Path, *, threads: int | None = None,
                 providers: list[str] | None = None) -> None:
        self._tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILE))
        # The shipped tokenizer pads and truncates to 128; batching pads here
        # instead, and overlong inputs must be seen whole to be refused.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._cls = self._special("[CLS]")
        self._sep = self._special("[SEP]")
        self.vocab_size = self._tokenizer.get_vocab_size()
        self._session = ort.InferenceSession(
            str(model_dir / MODEL_FILE),
            _session_options(threads),
            providers=providers or ["CPUExecutionProvider"],
        )
        self.dimensions: int = self._session.get_outputs()[0].shape[-1]
        # Tokens the model reads at once; an input may hold up to ``max_tokens`` of OpenAI's.
        self.window: int = WINDOW - SPECIAL_TOKENS
        self.max_tokens: int = MAX_INPUT_TOKENS
        # What the API's token-array inputs mean, and how OpenAI counts a text: cl100k_base.
        ranks = model_dir / RANKS_FILE
        self.openai_tokens = Cl100k(ranks) if ranks.is_file() else None

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids, without the [CLS]/[SEP] the model adds around them."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def count(self, text: str) -> int:
        """How many tokens of this model's vocabulary ``text`` is (special tokens not counted)."""
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def split(self, text: str, max_tokens: int) -> list[str]:
        """Cuts a text at token boundaries into pieces of at most ``max_tokens`` tokens."""
        offsets = self._tokenizer.encode(text, add_special_tokens=False).offsets
        if len(offsets) <= max_tokens:
            return [text]
        starts = [offsets[i][0] for i in range(0, len(offsets), max_tokens)]
        return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)])]

    def embed(
        self, inputs: Sequence[str] | Sequence[TokenInput], *, dimensions: int | None = None
    ) -> np.ndarray:
        """Unit vectors, one row per input, in input order.

        Inputs are all strings or all token-id arrays (ids in this model's
        vocabulary). An input longer than the model's window is embedded
        window by window (see the module's docstring). ``dimensions`` keeps
        the leading components and re-normalizes, as OpenAI's ``dimensions``
        parameter does.
        """
        if dimensions is not None and not 0 < dimensions <= self.dimensions:
            raise ValueError(f"dimensions must be between 1 and {self.dimensions}")
        windows: list[list[int]] = []
        owners: list[int] = []
        for index, ids in enumerate(self.token_ids(inputs)):
            for start in range(0, max(len(ids), 1), self.window):
                windows.append(ids[start:start + self.window])
                owners.append(index)
        embedded = np.empty((len(windows), self.dimensions), dtype=np.float32)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            embedded[batch] = self._embed_batch([windows[i] for i in batch])
        if len(windows) == len(inputs):
            vectors = embedded
        else:
            # Each input's windows, weighted by their token counts (at least one each).
            weights = np.array([max(len(window), 1) for window in windows], dtype=np.float32)
            vectors = np.zeros((len(inputs), self.dimensions), dtype=np.float32)
            np.add.at(vectors, np.array(owners), embedded * weights[:, None])
            vectors = _normalize(vectors)
        return reduce_dimensions(vectors, dimensions)

    def token_ids(self, inputs: Sequence[str] | Sequence[TokenInput]) -> list[list[int]]:
        """Validated token ids per input (their lengths are the usage counts).

        A text is refused when OpenAI would refuse it: over ``max_tokens`` of
        its cl100k_base tokens. Those are counted only for a text whose own
        tokens already pass that number, which few texts do.
        """
        if all(isinstance(item, str) for item in inputs):
            texts: Sequence[str] = inputs  # type: ignore[assignment]
            self._refuse_surely_too_long(texts)
            token_ids = self.tokenize(texts)
            for index, ids in enumerate(token_ids):
                if len(ids) > self.max_tokens:
                    n_tokens = self.openai_tokens.count(texts[index]) if self.openai_tokens else len(ids)
                    if n_tokens > self.max_tokens:
                        raise InputTooLong(index, n_tokens, self.max_tokens)
            return token_ids
        return [self._checked_tokens(i, item) for i, item in enumerate(inputs)]

    def _refuse_surely_too_long(self, texts: Sequence[str]) -> None:
        """Refuse, without tokenizing it, a text with far more words than the limit's tokens.

        Both tokenizers split at every space, so each word is at least one token;
        ``split`` with ``maxsplit`` stops after the first words, so megabytes of
        text cost microseconds here instead of seconds (and their memory) there.
        A text only somewhat too long is still tokenized, for an exact count.
        """
        words = _SURELY_TOO_LONG * self.max_tokens
        for index, text in enumerate(texts):
            if len(text) > words and len(text.split(maxsplit=words)) > words:
                raise InputTooLong(index, words + 1, self.max_tokens, at_least=True)

    def _special(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"the tokenizer has no {token} token")
        return token_id

    def _checked_tokens(self, index: int, item: object) -> list[int]:
        if not isinstance(item, list | tuple) or not all(isinstance(t, int) for t in item):
            raise TypeError("inputs must be all strings or all arrays of integer token ids")
        ids = list(item)
        if any(not 0 <= t < self.vocab_size for t in ids):
            raise InvalidTokens(index, self.vocab_size)
        return ids

    def _embed_batch(self, token_ids: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in token_ids) + SPECIAL_TOKENS
        input_ids = np.zeros((len(token_ids), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids) + SPECIAL_TOKENS] = [self._cls, *ids, self._sep]
            mask[row, : len(ids) + SPECIAL_TOKENS] = 1
        (hidden,) = self._session.run(
            None,
            {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(mask)},
        )
        # Mean over real tokens only: padding positions still produce outputs.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
        return _normalize(pooled)


def reduce_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The leading ``dimensions`` components of unit vectors, re-normalized (all when None)."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    return _normalize(vectors[:, :dimensions])


def _normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _session_options(threads: int | None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options
