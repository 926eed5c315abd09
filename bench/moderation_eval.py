"""Scores the moderation engine on the labelled evaluation set.

    python bench/moderation_eval.py [MODEL_DIR] [--eval tests/data/moderation_eval.jsonl]

MODEL_DIR defaults to where `hearth models pull moderation-local` puts the model.

Prints precision and recall per category and for flagged / not flagged. The
evaluation texts are disjoint from the engine's training examples.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hearth.engines.moderation import CATEGORIES, ModerationEngine, load_examples
from hearth.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = Settings().resolved_models_dir / "moderation-local"


def precision_recall_f1(predicted: list[bool], actual: list[bool]) -> tuple[float, float, float]:
    true_pos = sum(p and a for p, a in zip(predicted, actual))
    precision = true_pos / max(sum(predicted), 1)
    recall = true_pos / max(sum(actual), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--eval", type=Path, default=ROOT / "tests/data/moderation_eval.jsonl")
    args = parser.parse_args()

    started = time.perf_counter()
    engine = ModerationEngine(args.model_dir)
    loaded = time.perf_counter()
    examples = load_examples(args.eval)
    results = engine.classify([e.text for e in examples])
    elapsed = time.perf_counter() - loaded

    benign = sum(not e.categories for e in examples)
    print(
        f"{len(examples)} texts ({benign} benign); load {loaded - started:.1f} s, "
        f"{1000 * elapsed / len(examples):.1f} ms a text\n"
    )
    print(f"{'category':26} {'support':>7} {'precision':>9} {'recall':>7} {'f1':>6}")
    for category in CATEGORIES:
        actual = [category in e.categories for e in examples]
        predicted = [r.categories[category] for r in results]
        p, r, f = precision_recall_f1(predicted, actual)
        print(f"{category:26} {sum(actual):7} {p:9.3f} {r:7.3f} {f:6.3f}")

    flagged_actual = [bool(e.categories) for e in examples]
    flagged_predicted = [r.flagged for r in results]
    for name, predicted, actual in (
        ("flagged", flagged_predicted, flagged_actual),
        ("not flagged", [not f for f in flagged_predicted], [not f for f in flagged_actual]),
    ):
        p, r, f = precision_recall_f1(predicted, actual)
        print(f"{name:26} {sum(actual):7} {p:9.3f} {r:7.3f} {f:6.3f}")

    misses = [(e, r) for e, r in zip(examples, results) if r.flagged != bool(e.categories)]
    if misses:
        print("\nflagged/not-flagged errors:")
        for example, result in misses:
            top = max(result.category_scores, key=result.category_scores.get)
            print(
                f"  {'FP' if result.flagged else 'FN'} {top}={result.category_scores[top]:.2f} "
                f"{example.text}"
            )


if __name__ == "__main__":
    main()
