"""ModerationService over the fake classifier: input forms, merged parts, metering, image refusals."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from hearth.errors import APIError, InvalidRequest, NotFound
from hearth.moderations.protocol import CreateModerationRequest, CreateModerationResponse
from hearth.moderations.service import ModerationService
from tests.services.conftest import CALLER, Hearth

MODEL = "omni-moderation-latest"


def moderate(hearth: Hearth, input_: Any, *, model: str = MODEL, background: bool = False
             ) -> CreateModerationResponse:
    body = CreateModerationRequest.model_validate({"model": model, "input": input_})
    return asyncio.run(ModerationService(hearth.models, hearth.meter).create(CALLER, body, background=background))


def image(data: bytes) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(data).decode()}}


def test_each_string_gets_a_result_metered_by_its_characters(hearth: Hearth) -> None:
    """One result per string, in order; the one event counts every character."""
    texts = ["have a nice day", "I will kill the process"]

    response = moderate(hearth, texts)

    assert CreateModerationResponse.model_validate(response.model_dump(mode="json")) == response
    assert response.id.startswith("modr-") and response.model == MODEL
    assert [result.flagged for result in response.results] == [False, True]
    assert response.results[1].categories["violence"] and response.results[1].category_scores["violence"] == 0.9
    event = hearth.only_event()
    assert (event.kind, event.endpoint, event.model) == ("moderations", "/v1/moderations", MODEL)
    assert (event.characters, event.images) == (sum(len(text) for text in texts), 0)
    assert hearth.runner(MODEL).admitted == 0


def test_background_moderation_is_metered_as_batch(hearth: Hearth) -> None:
    """Moderation done for a job is recorded with batch=True."""
    moderate(hearth, "hello", background=True)

    assert hearth.only_event(batch=True).characters == 5


def test_the_parts_of_one_input_make_one_result_with_the_worst_scores(hearth: Hearth) -> None:
    """Text and image parts are one input: a flagged image flags it, and says it applied to images."""
    response = moderate(hearth, [{"type": "text", "text": "a picture"}, image(b"nsfw"), image(b"kitten")])

    [result] = response.results
    assert result.flagged and result.categories["sexual"] and not result.categories["violence"]
    assert result.category_scores["sexual"] == 0.9
    assert result.category_applied_input_types["sexual"] == ["text", "image"]
    assert result.category_applied_input_types["violence"] == ["text"]
    event = hearth.only_event()
    assert (event.characters, event.images) == (len("a picture"), 2)


@pytest.mark.parametrize(("input_", "param", "code"), [
    ([], "input", None),
    ([{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
     "input[0].image_url.url", "image_url_not_supported"),
    ([{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}],
     "input[1].image_url.url", "invalid_image_url"),
    ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,not base64!"}}],
     "input[0].image_url.url", "invalid_image_url"),
    ([image(b"kitten"), image(b"bad bytes")], "input[1].image_url.url", "invalid_image"),
])
def test_refusals_name_the_input_and_meter_nothing(hearth: Hearth, input_: Any, param: str,
                                                   code: str | None) -> None:
    """An empty array, a remote or malformed image URL and an undecodable image are 400s naming the part."""
    with pytest.raises(InvalidRequest) as refused:
        moderate(hearth, input_)

    assert (refused.value.param, refused.value.code) == (param, code)
    assert hearth.meter.events == []
    assert hearth.runner(MODEL).admitted == 0


@pytest.mark.parametrize(("model", "error", "code"), [
    ("text-moderation-stable", NotFound, "model_not_found"),
    ("text-embedding-3-small", InvalidRequest, "model_not_supported"),
])
def test_a_model_that_cannot_moderate_is_refused(hearth: Hearth, model: str, error: type[APIError],
                                                 code: str) -> None:
    """An unknown model is model_not_found; an embedding model is model_not_supported."""
    with pytest.raises(error) as refused:
        moderate(hearth, "hello", model=model)

    assert (refused.value.param, refused.value.code) == ("model", code)
