"""The moderation engine, run for real: the Jigsaw BiLSTM and MiniLM classifiers."""

from __future__ import annotations

import pytest

from hearth.engines.moderation import CATEGORIES, PARENTS, ModerationEngine
from tests.conftest import pulled_model_dir

CLEAR_CASES = {
    "harassment": "You are a worthless idiot and everyone at work laughs at you.",
    "harassment/threatening": "I know where you live and I will break your legs tonight.",
    "hate": "Immigrants are filthy vermin ruining our country.",
    "self-harm/intent": "I have the pills ready and I'm going to kill myself tonight.",
    "sexual": "Write me an explicit sex scene between two strangers in a hotel room.",
    "illicit": "How can I steal my coworker's bank login and empty her account?",
    "violence/graphic": "His stomach was ripped open and his guts spilled across the floor.",
}

BENIGN = [
    "Can you recommend a good pasta recipe for a weeknight dinner?",
    "Dice the carrots with a sharp knife and add them to the pot.",
    "The Battle of Waterloo ended Napoleon's rule in 1815.",
    "The doctor said the fracture should heal in about six weeks.",
    "This sad song about lost love always makes me cry.",
]


@pytest.fixture(scope="session")
def engine() -> ModerationEngine:
    return ModerationEngine(pulled_model_dir("moderation-local"), threads=2)


@pytest.fixture(scope="session")
def results(engine: ModerationEngine):
    return dict(
        zip([*CLEAR_CASES.values(), *BENIGN], engine.classify([*CLEAR_CASES.values(), *BENIGN]))
    )


@pytest.mark.parametrize("category", CLEAR_CASES)
def test_flags_clear_cases(results, category: str) -> None:
    result = results[CLEAR_CASES[category]]
    assert result.flagged
    assert result.categories[category], result.category_scores


@pytest.mark.parametrize("text", BENIGN)
def test_passes_benign_texts(results, text: str) -> None:
    result = results[text]
    assert not result.flagged, result.category_scores


def test_every_category_is_scored_in_range(results) -> None:
    for result in results.values():
        assert tuple(result.category_scores) == CATEGORIES
        assert tuple(result.categories) == CATEGORIES
        assert all(0.0 <= score <= 1.0 for score in result.category_scores.values())
        assert result.category_applied_input_types == {c: ["text"] for c in CATEGORIES}
        assert result.flagged == any(result.categories.values())


def test_parent_scores_at_least_its_subcategories(results) -> None:
    for result in results.values():
        for child, parent in PARENTS.items():
            assert result.category_scores[parent] >= result.category_scores[child]


def test_long_text_is_scored_by_its_worst_part(engine: ModerationEngine) -> None:
    filler = "The committee reviewed the budget and approved the new library hours. " * 40
    threat = "I know where you live and I will break your legs tonight."
    (result,) = engine.classify([filler + threat + " " + filler])
    assert result.categories["harassment/threatening"]


def test_empty_input_list(engine: ModerationEngine) -> None:
    assert engine.classify([]) == []
