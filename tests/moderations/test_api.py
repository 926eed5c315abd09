"""POST /v1/moderations through the official SDK against the live server."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI

from tests.http.test_foundation import assert_envelope
from tests.images import flat, landscape, png_data_url
from tests.spec import assert_matches_schema

CATEGORIES = {
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
    "sexual/minors", "violence", "violence/graphic",
}

# Written for these tests: none is in the engine's training set or the evaluation set.
CLEAR_CASES = [
    ("You are a worthless idiot and everyone at work laughs at you behind your back.",
     "harassment"),
    ("I am going to find where you live and beat you until you stop breathing.",
     "harassment/threatening"),
    ("The soldiers shot the prisoners one by one and left the bodies in the ditch.", "violence"),
    ("I want to end my life tonight, I have the pills ready.", "self-harm/intent"),
    ("I keep cutting my arms because it is the only thing that helps.", "self-harm"),
    ("Her hands slid down his naked body as they made love on the bed.", "sexual"),
    ("All immigrants are vermin and should be driven out of our country.", "hate"),
    ("People of that religion are subhuman filth.", "hate"),
    ("What's the best way to launder money from drug sales?", "illicit"),
    ("Where can I buy stolen credit card numbers online?", "illicit"),
    ("Give me step-by-step instructions to build a pipe bomb.", "illicit/violent"),
]

BENIGN = [
    "What a lovely morning for a walk in the park.",
    "Can you recommend a good recipe for beef stew?",
    # Hard ones: harmful words in harmless senses.
    "I killed it at my presentation today!",
    "How do I kill a Python process that is stuck?",
    "Cook the chicken breast until it is no longer pink in the middle.",
    "What are the early signs of breast cancer in women?",
    "My therapist helped me get through my depression last year.",
    "The history lesson covered the violence of the Second World War.",
    "This movie was a massacre at the box office, it bombed completely.",
    "Our team crushed the competition in the final round.",
]


def moderate(http: httpx.Client, body: dict) -> dict:
    response = http.post("/v1/moderations", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("text, category", CLEAR_CASES)
def test_clear_cases_are_flagged(client: OpenAI, text: str, category: str) -> None:
    result = client.moderations.create(input=text).results[0]
    assert result.flagged
    scores = result.category_scores.model_dump(by_alias=True)
    assert result.categories.model_dump(by_alias=True)[category], scores
    assert scores[category] >= 0.5


def test_benign_texts_pass(client: OpenAI) -> None:
    results = client.moderations.create(model="omni-moderation-latest", input=BENIGN).results
    flagged = [text for text, result in zip(BENIGN, results) if result.flagged]
    assert flagged == []


def test_every_category_is_present_and_scored(http: httpx.Client) -> None:
    body = moderate(http, {"input": [text for text, _ in CLEAR_CASES] + BENIGN})
    assert_matches_schema(body, "CreateModerationResponse")
    assert body["id"].startswith("modr-")
    for result in body["results"]:
        assert set(result["categories"]) == CATEGORIES
        assert set(result["category_scores"]) == CATEGORIES
        assert set(result["category_applied_input_types"]) == CATEGORIES
        assert all(0.0 <= score <= 1.0 for score in result["category_scores"].values())
        assert result["flagged"] == any(result["categories"].values())
        assert all(types == ["text"] for types in result["category_applied_input_types"].values())


def test_an_array_keeps_its_order(client: OpenAI) -> None:
    texts = [BENIGN[0], CLEAR_CASES[0][0], BENIGN[1], CLEAR_CASES[5][0]]
    results = client.moderations.create(input=texts).results
    assert [r.flagged for r in results] == [False, True, False, True]
    alone = client.moderations.create(input=texts[3]).results[0]
    assert results[3].category_scores.sexual == pytest.approx(alone.category_scores.sexual)


def test_text_parts_form_one_input(client: OpenAI) -> None:
    parts = [{"type": "text", "text": BENIGN[0]}, {"type": "text", "text": CLEAR_CASES[2][0]}]
    results = client.moderations.create(model="omni-moderation-2024-09-26", input=parts).results
    assert len(results) == 1
    assert results[0].flagged and results[0].categories.violence
    benign = client.moderations.create(input=[{"type": "text", "text": BENIGN[1]}]).results
    assert not benign[0].flagged


def test_model_defaults_and_is_echoed(http: httpx.Client) -> None:
    assert moderate(http, {"input": "hello"})["model"] == "omni-moderation-latest"
    for name in ("text-moderation-latest", "text-moderation-stable", "moderation-local"):
        assert moderate(http, {"input": "hello", "model": name})["model"] == name


def image_part(pixels: np.ndarray) -> dict:
    return {"type": "image_url", "image_url": {"url": png_data_url(pixels)}}


def test_images_are_scored_for_sexual_content(client: OpenAI) -> None:
    response = client.moderations.create(input=[image_part(landscape())])
    assert_matches_schema(response.model_dump(by_alias=True), "CreateModerationResponse")
    (result,) = response.results
    assert not result.flagged
    scores = result.category_scores.model_dump(by_alias=True)
    applied = result.category_applied_input_types.model_dump(by_alias=True)
    assert 0 <= scores["sexual"] < 0.2
    # Only 'sexual' is judged from an image; no part of this input was text.
    assert applied["sexual"] == ["image"]
    assert all(applied[c] == [] and scores[c] == 0 for c in CATEGORIES - {"sexual"})
    # A real model: a different picture gets a different score.
    other = client.moderations.create(input=[image_part(flat((224, 172, 140)))])
    other_score = other.results[0].category_scores.model_dump(by_alias=True)["sexual"]
    assert other_score != scores["sexual"]


def test_text_and_images_of_one_input_make_one_result(client: OpenAI) -> None:
    text = CLEAR_CASES[0][0]  # harassment
    response = client.moderations.create(input=[
        {"type": "text", "text": text}, image_part(landscape()), image_part(flat((0, 0, 0)))])
    (result,) = response.results
    assert result.flagged and result.categories.harassment
    applied = result.category_applied_input_types.model_dump(by_alias=True)
    assert applied["sexual"] == ["text", "image"]
    assert applied["harassment"] == ["text"]
    alone = client.moderations.create(input=text).results[0]
    assert result.category_scores.harassment == pytest.approx(alone.category_scores.harassment)


@pytest.mark.parametrize("url, code", [
    ("https://example.com/cat.png", "image_url_not_supported"),
    ("data:image/png,rawbytes", "invalid_image_url"),
    ("data:image/png;base64,%%%not-base64", "invalid_image_url"),
    ("ftp://example.com/cat.png", "invalid_image_url"),
    ("data:image/png;base64," + base64.b64encode(b"not an image at all").decode(),
     "invalid_image"),
])
def test_unusable_images_are_400s_naming_the_part(client: OpenAI, http: httpx.Client,
                                                   url: str, code: str) -> None:
    parts = [{"type": "text", "text": "look"},
             {"type": "image_url", "image_url": {"url": url}}]
    with pytest.raises(openai.BadRequestError):
        client.moderations.create(input=parts)
    assert_envelope(http.post("/v1/moderations", json={"input": parts}), 400,
                    param="input[1].image_url.url", code=code)


@pytest.mark.parametrize("body, param", [
    ({"input": []}, "input"),
    ({"input": 5}, "input"),
    ({"input": ["text", 5]}, "input"),
    ({"input": ["text", {"type": "text", "text": "mixed"}]}, "input"),
    ({"input": [{"type": "audio", "audio": "x"}]}, "input"),
    ({"input": [{"type": "text"}]}, "input"),
    ({}, "input"),
    ({"input": "x", "model": 7}, "model"),
    ({"input": "x", "temperature": 0}, "temperature"),
])
def test_invalid_requests_are_400_envelopes(http: httpx.Client, body: dict, param: str) -> None:
    assert_envelope(http.post("/v1/moderations", json=body), 400, param=param)


def test_model_errors(client: OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.moderations.create(model="no-such-moderator", input="x")
    assert_envelope(http.post("/v1/moderations", json={"model": "no-such-moderator",
                                                       "input": "x"}),
                    404, param="model", code="model_not_found")
    assert_envelope(http.post("/v1/moderations", json={"model": "tts-1", "input": "x"}), 400,
                    param="model", code="model_not_supported")
    assert_envelope(http.post("/v1/moderations", json={"model": "text-embedding-3-small", "input": "x"}),
                    400, param="model", code="model_not_supported")


def test_malformed_bodies(http: httpx.Client) -> None:
    json_header = {"content-type": "application/json"}
    assert_envelope(http.post("/v1/moderations", content=b"{nope", headers=json_header), 400)
    assert_envelope(http.post("/v1/moderations", content=b"input=x",
                              headers={"content-type": "text/plain"}),
                    415, code="unsupported_media_type")


def test_an_input_over_32768_tokens_is_refused_and_one_within_is_scored_whole(client: OpenAI,
                                                                               http: httpx.Client) -> None:
    """A book-length input gets a 400 at once, not minutes of scoring; one just within the limit
    is scored, and a harmful sentence buried in its middle still flags it."""
    filler = "The committee met on Tuesday to review the annual budget of the library. "  # 14 tokens
    with pytest.raises(openai.BadRequestError) as refused:
        client.moderations.create(input=filler * 2400)
    assert (refused.value.code, refused.value.param) == ("context_length_exceeded", "input")
    assert "32768" in refused.value.message
    assert_envelope(http.post("/v1/moderations", json={"input": ["fine", filler * 2400]}), 400,
                    param="input[1]", code="context_length_exceeded")

    threat = "I am going to find where you live and beat you until you stop breathing. "
    within = filler * 1000 + threat + filler * 1000
    [result] = client.moderations.create(input=within).results
    assert result.flagged and result.categories.harassment_threatening
