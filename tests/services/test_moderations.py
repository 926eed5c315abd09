"""ModerationService over the fake classifier: input forms, merged parts, metering, image refusals."""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

import pytest

from hearth.errors import APIError, InvalidRequest, NotFound
from hearth.moderations.protocol import CreateModerationRequest, CreateModerationResponse
from hearth.moderations.service import ModerationService
from tests.services.conftest import CALLER, DEADLINE, FakeModeration, Hearth

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


@pytest.mark.parametrize(("input_", "param"), [("word " * 1001, "input"), (["fine", "word " * 1001], "input[1]")])
def test_an_input_over_the_token_limit_is_refused_before_any_is_scored(hearth: Hearth, input_: Any,
                                                                        param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        moderate(hearth, input_)
    assert (refused.value.param, refused.value.code) == (param, "context_length_exceeded")
    assert "1001 tokens" in refused.value.message and "1000" in refused.value.message
    engine: FakeModeration = hearth.engine(MODEL)
    assert engine.scored == [] and hearth.meter.events == []


def test_a_long_input_lets_a_later_request_in_between_its_steps(hearth: Hearth) -> None:
    """A text of three steps' pieces is scored a step a call; a request that arrives during the
    first step is answered before the second, not after the whole long text."""
    from hearth.moderations.service import STEP_PIECES

    engine: FakeModeration = hearth.engine(MODEL)
    engine.gate = threading.Event()
    service = ModerationService(hearth.models, hearth.meter)
    long_text = " ".join(f"w{i}" for i in range(3 * STEP_PIECES))

    def request(text: str) -> CreateModerationRequest:
        return CreateModerationRequest.model_validate({"model": MODEL, "input": text})

    async def scenario() -> None:
        long = asyncio.ensure_future(service.create(CALLER, request(long_text)))
        while not engine.scored:  # the long text's first step is at the model, held by the gate
            await asyncio.sleep(0.01)
        short = asyncio.ensure_future(service.create(CALLER, request("kill it")))
        queue = hearth.runner(MODEL)._executor._tasks
        while queue.qsize() < 1:  # the short request is queued behind the held step
            await asyncio.sleep(0.01)
        engine.gate.set()  # type: ignore[union-attr]
        results = await asyncio.wait_for(asyncio.gather(long, short), DEADLINE)
        assert [r.results[0].flagged for r in results] == [False, True]

    asyncio.run(scenario())
    assert [len(pieces) for pieces in engine.scored] == [STEP_PIECES, 2, STEP_PIECES, STEP_PIECES]
