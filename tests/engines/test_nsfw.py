"""open_nsfw on images PyAV decodes: scores, and refusals before decoding."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from hearth.engines import nsfw
from hearth.engines.nsfw import ImageDecodeError, NsfwClassifier
from tests.conftest import pulled_model_dir
from tests.images import flat, landscape, png_data_url


@pytest.fixture(scope="module")
def classifier() -> NsfwClassifier:
    return NsfwClassifier(pulled_model_dir("moderation-local") / nsfw.MODEL_FILE, threads=2)


def png(pixels: np.ndarray) -> bytes:
    return base64.b64decode(png_data_url(pixels).split(",", 1)[1])


def test_scores_are_probabilities_in_order(classifier: NsfwClassifier) -> None:
    images = [png(landscape()), png(flat((224, 172, 140)))]
    scores = classifier.scores(images)
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    assert scores == pytest.approx([classifier.scores([image])[0] for image in images], abs=1e-5)
    assert classifier.scores([]) == []


def test_bad_images_name_their_index(classifier: NsfwClassifier,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageDecodeError) as raised:
        classifier.scores([png(landscape()), b"\x89PNG\r\n\x1a\n but then nothing"])
    assert raised.value.index == 1
    monkeypatch.setattr(nsfw, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageDecodeError, match="larger than") as raised:
        classifier.scores([png(flat((1, 2, 3)))])
    assert raised.value.index == 0
