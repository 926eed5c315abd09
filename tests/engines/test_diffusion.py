"""The diffusers engine on the tiny random pipeline: sizes, the three kinds of work, stopping."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hearth.engines.diffusion import Cancelled, DiffusionEngine
from tests.images.tiny_pipeline import build_tiny_pipeline


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DiffusionEngine:
    directory = build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))
    return DiffusionEngine(directory, steps=2, threads=2)


def test_generates_at_the_asked_size(engine: DiffusionEngine) -> None:
    picture = engine.generate("a fox", width=192, height=64, seed=1)
    assert picture.image.size == (192, 64) and picture.image.mode == "RGB"
    again = engine.generate("a fox", width=192, height=64, seed=1)
    assert np.array_equal(np.asarray(picture.image), np.asarray(again.image))  # seeded: repeatable


def test_vary_and_inpaint_keep_the_size(engine: DiffusionEngine) -> None:
    start = Image.new("RGB", (128, 128), (200, 30, 30))
    assert engine.vary("", start, strength=0.6).image.size == (128, 128)
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (32, 32, 96, 96))
    assert engine.inpaint("a hole", start, mask).image.size == (128, 128)


def test_sizes_off_the_latent_grid_are_refused(engine: DiffusionEngine) -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        engine.generate("a fox", width=100, height=64)


def test_a_cancelled_call_stops_between_steps(engine: DiffusionEngine) -> None:
    polls = 0

    def cancelled() -> bool:
        nonlocal polls
        polls += 1
        return polls > 1  # checked once before the first step, then after each step

    with pytest.raises(Cancelled):
        engine.generate("a fox", width=64, height=64, steps=4, cancelled=cancelled)
    assert polls == 2  # stopped after the first of four steps


def test_prompts_past_the_text_window_are_cut_where_the_encoder_stops(engine: DiffusionEngine) -> None:
    long = "the " * 200
    used = engine.prompt_used(long)
    assert long.startswith(used) and len(used) < len(long)
    assert engine.count_tokens(long) == 200
    assert engine.prompt_used("a fox") == "a fox"
