"""/v1/images through the official SDK, on a tiny random Stable Diffusion pipeline.

The pictures are noise (the weights are random), but every one is painted
for real by the full pipeline at the size asked, so these check the whole
path: names and limits per model, sizes, formats, masks, links and usage.
"""

from __future__ import annotations

import base64
import io
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import openai
import pytest
from openai import OpenAI
from PIL import Image

from hearth.images.links import SECRET_FILE, ImageLinks
from tests.conftest import LiveServer
from tests.images.tiny_pipeline import MODEL_ID
from tests.spec import assert_matches_schema


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def picture(size: int = 256, alpha: bool = True, width: int | None = None) -> np.ndarray:
    """A smooth colour ramp (RGBA, opaque unless made otherwise)."""
    w = width or size
    y, x = np.mgrid[0:size, 0:w]
    pixels = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(size - 1, 1),
                       np.full_like(x, 128), np.full_like(x, 255)], axis=-1).astype(np.uint8)
    return pixels if alpha else pixels[..., :3]


def centre_hole(size: int = 256) -> np.ndarray:
    """A mask: opaque, with a fully transparent square in the middle."""
    mask = np.full((size, size, 4), 255, np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4, 3] = 0
    return mask


def decoded(b64: str | None) -> Image.Image:
    assert b64
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def assert_error(exc: openai.APIStatusError, status: int, param: str | None, code: str | None = None) -> None:
    assert exc.status_code == status, exc.response.text
    error = exc.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error


# -- generations ----------------------------------------------------------------------


def test_generation_b64_json_n_images_of_the_asked_size(image_client: OpenAI, image_http: httpx.Client) -> None:
    result = image_client.images.generate(model="dall-e-2", prompt="a lighthouse at dusk", n=2,
                                          size="256x256", response_format="b64_json")
    assert len(result.data) == 2
    for item in result.data:
        image = decoded(item.b64_json)
        assert (image.format, image.size) == ("PNG", (256, 256))
        assert item.url is None and item.revised_prompt is None
    raw = image_http.post("/v1/images/generations", json={
        "model": "dall-e-2", "prompt": "a lighthouse", "size": "512x512", "response_format": "b64_json"})
    assert raw.status_code == 200, raw.text
    assert_matches_schema(raw.json(), "ImagesResponse")
    assert decoded(raw.json()["data"][0]["b64_json"]).size == (512, 512)


def test_generation_at_a_wide_size_is_painted_at_that_size(image_client: OpenAI) -> None:
    result = image_client.images.generate(model=MODEL_ID, prompt="a wide valley", size="384x128",
                                          response_format="b64_json")
    assert decoded(result.data[0].b64_json).size == (384, 128)


def test_url_answers_are_signed_links_that_expire(image_client: OpenAI, image_server: LiveServer) -> None:
    result = image_client.images.generate(model="dall-e-2", prompt="a red kite", size="256x256")
    url = result.data[0].url
    assert url and url.startswith(image_server.base_url) and result.data[0].b64_json is None
    fetched = httpx.get(url)  # no API key: the signature is the permission
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (256, 256)

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    expires, signature = int(query["expires"][0]), query["signature"][0]
    assert 3500 <= expires - time.time() <= 3700  # an hour
    base = f"{image_server.base_url}{parts.path}"
    stretched = httpx.get(base, params={"expires": expires + 3600, "signature": signature})
    forged = httpx.get(base, params={"expires": expires, "signature": "0" * 64})
    for response in (stretched, forged):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "invalid_image_url"
    # The server's own key, signing an hour and a second in the past: a link that has expired.
    links = ImageLinks(bytes.fromhex((image_server.data_dir / SECRET_FILE).read_text()), 3600)
    path, _ = links.sign(parts.path.rsplit("/", 1)[1], now=time.time() - 3601)
    expired = httpx.get(f"{image_server.base_url}{path}")
    assert expired.status_code == 404
    assert expired.json()["error"]["code"] == "image_url_expired"
    guessed = httpx.get(f"{image_server.base_url}/v1/images/content/aaaa.png",
                        params={"expires": expires, "signature": signature})
    assert guessed.status_code == 403


def test_gpt_image_output_formats_and_fields(image_client: OpenAI, image_http: httpx.Client) -> None:
    raw = image_http.post("/v1/images/generations", json={
        "model": "gpt-image-1", "prompt": "a paper boat", "size": "1024x1024", "quality": "low",
        "output_format": "jpeg", "output_compression": 60})
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert_matches_schema(body, "ImagesResponse")
    assert (body["output_format"], body["size"], body["quality"], body["background"]) == \
        ("jpeg", "1024x1024", "low", "opaque")
    assert body["usage"]["output_tokens"] == 64 * 64
    assert body["usage"]["input_tokens_details"]["text_tokens"] > 0
    image = decoded(body["data"][0]["b64_json"])
    assert (image.format, image.size) == ("JPEG", (1024, 1024))

    webp = image_client.images.generate(model=MODEL_ID, prompt="a paper boat", size="256x256",
                                        output_format="webp", background="transparent",
                                        response_format="b64_json")
    image = decoded(webp.data[0].b64_json)
    assert (image.format, image.size, image.mode) == ("WEBP", (256, 256), "RGBA")
    assert webp.background == "transparent"


def test_dall_e_3_revises_the_prompt_and_takes_one_image(image_client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        image_client.images.generate(model="dall-e-3", prompt="a fox", n=2)
    assert_error(refused.value, 400, "n")
    result = image_client.images.generate(model="dall-e-3", prompt="a fox in the snow " * 30,
                                          style="natural", response_format="b64_json")
    revised = result.data[0].revised_prompt
    assert revised and revised.startswith("a fox in the snow")
    assert decoded(result.data[0].b64_json).size == (1024, 1024)


def test_streamed_generation_sends_partial_pictures_then_the_picture(image_client: OpenAI) -> None:
    events = list(image_client.images.generate(model="gpt-image-1", prompt="a sunrise", size="1024x1024",
                                               quality="high", stream=True, partial_images=2))
    assert [event.type for event in events] == [
        "image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"]
    assert [getattr(event, "partial_image_index", None) for event in events] == [0, 1, None]
    for event in events:
        schema = "ImageGenCompletedEvent" if event.type.endswith("completed") else "ImageGenPartialImageEvent"
        assert_matches_schema(event.model_dump(exclude_none=True), schema)
        assert decoded(event.b64_json).size == (1024, 1024)
    completed = events[-1]
    assert completed.usage.output_tokens == 64 * 64
    assert (completed.output_format, completed.background, completed.quality) == ("png", "opaque", "high")

    several = list(image_client.images.generate(model=MODEL_ID, prompt="a sunrise", size="256x128", n=2,
                                                stream=True, partial_images=1, quality="high"))
    assert [event.type for event in several] == [
        "image_generation.partial_image", "image_generation.completed"] * 2
    assert all(decoded(event.b64_json).size == (256, 128) for event in several)


def test_streamed_edit_keeps_the_unmasked_pixels(image_client: OpenAI) -> None:
    original = picture()
    stream = image_client.images.edit(
        model=MODEL_ID, image=("ramp.png", png(original), "image/png"), stream=True, partial_images=1,
        mask=("mask.png", png(centre_hole()), "image/png"), prompt="a blue circle", size="256x256")
    events = list(stream)
    assert [event.type for event in events] == ["image_edit.partial_image", "image_edit.completed"]
    hole = centre_hole()[..., 3] == 0
    for event in events:
        edited = np.asarray(decoded(event.b64_json).convert("RGB")).astype(int)
        assert np.abs(edited[~hole] - original[..., :3][~hole]).max() <= 1


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "dall-e-2", "size": "1792x1024"}, "size"),
    ({"model": "dall-e-3", "size": "256x256"}, "size"),
    ({"model": "gpt-image-1", "size": "512x512"}, "size"),
    ({"model": MODEL_ID, "size": "100x100"}, "size"),
    ({"model": MODEL_ID, "size": "2048x256"}, "size"),
    ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt"),
    ({"model": "dall-e-3", "prompt": "x" * 4001}, "prompt"),
    ({"model": "dall-e-2", "prompt": " "}, "prompt"),
    ({"model": "dall-e-2", "n": 11}, "n"),
    ({"model": "dall-e-2", "n": 0}, "n"),
    ({"model": "dall-e-2", "output_format": "webp"}, "output_format"),
    ({"model": "dall-e-2", "quality": "hd"}, "quality"),
    ({"model": "dall-e-2", "style": "vivid"}, "style"),
    ({"model": "gpt-image-1", "response_format": "url"}, "response_format"),
    ({"model": "gpt-image-1", "output_format": "jpeg", "background": "transparent"}, "background"),
    ({"model": "gpt-image-1", "output_compression": 101}, "output_compression"),
    ({"model": "dall-e-2", "stream": True}, "stream"),
    ({"model": "gpt-image-1", "stream": True, "partial_images": 4}, "partial_images"),
    ({"model": "dall-e-2", "response_format": "gif"}, "response_format"),
])
def test_generation_refusals_name_the_field(image_http: httpx.Client, body: dict, param: str) -> None:
    response = image_http.post("/v1/images/generations", json={"prompt": "a cat", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_and_wrong_kind_models(image_client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        image_client.images.generate(model="no-such-painter", prompt="a cat")
    assert_error(missing.value, 404, "model", "model_not_found")
    with pytest.raises(openai.BadRequestError) as wrong:
        image_client.images.generate(model="moderation-local", prompt="a cat")
    assert_error(wrong.value, 400, "model", "model_not_supported")


def test_flagged_prompts_are_blocked_unless_moderation_is_low(image_client: OpenAI) -> None:
    prompt = "I am going to find where you live and beat you until you stop breathing."
    with pytest.raises(openai.BadRequestError) as blocked:
        image_client.images.generate(model="dall-e-2", prompt=prompt, size="256x256")
    assert_error(blocked.value, 400, "prompt", "moderation_blocked")
    assert blocked.value.response.json()["error"]["type"] == "image_generation_user_error"
    allowed = image_client.images.generate(model=MODEL_ID, prompt=prompt, size="256x256",
                                           moderation="low", response_format="b64_json")
    assert len(allowed.data) == 1


# -- edits ----------------------------------------------------------------------------


def test_edit_changes_only_the_masked_area(image_client: OpenAI, image_http: httpx.Client) -> None:
    original = picture()
    result = image_client.images.edit(
        model="dall-e-2", image=("ramp.png", png(original), "image/png"),
        mask=("mask.png", png(centre_hole()), "image/png"), prompt="a blue circle", n=2,
        size="256x256", response_format="b64_json")
    assert len(result.data) == 2
    hole = centre_hole()[..., 3] == 0
    for item in result.data:
        edited = np.asarray(decoded(item.b64_json).convert("RGB")).astype(int)
        assert edited.shape == (256, 256, 3)
        outside = np.abs(edited[~hole] - original[..., :3][~hole])
        assert outside.max() <= 1, "pixels outside the mask changed"
        inside = np.abs(edited[hole] - original[..., :3][hole])
        assert inside.mean() > 5, "the masked area was not repainted"
    raw = image_http.post("/v1/images/edits", data={"prompt": "a star", "size": "256x256",
                                                    "response_format": "url"},
                          files={"image": ("ramp.png", png(original), "image/png"),
                                 "mask": ("mask.png", png(centre_hole()), "image/png")})
    assert raw.status_code == 200, raw.text
    assert_matches_schema(raw.json(), "ImagesResponse")
    assert httpx.get(raw.json()["data"][0]["url"]).status_code == 200


def test_edit_without_mask_uses_the_image_alpha(image_client: OpenAI) -> None:
    holed = picture()
    holed[..., 3] = centre_hole()[..., 3]
    result = image_client.images.edit(model="dall-e-2", image=("holed.png", png(holed), "image/png"),
                                      prompt="a moon", size="256x256", response_format="b64_json")
    edited = np.asarray(decoded(result.data[0].b64_json).convert("RGB")).astype(int)
    keep = holed[..., 3] == 255
    assert np.abs(edited[keep] - holed[..., :3][keep]).max() <= 1
    with pytest.raises(openai.BadRequestError) as opaque:
        image_client.images.edit(model="dall-e-2", image=("ramp.png", png(picture()), "image/png"),
                                 prompt="a moon", size="256x256")
    assert_error(opaque.value, 400, "mask", "invalid_mask")


def test_edit_of_several_images_and_other_formats(image_client: OpenAI) -> None:
    jpeg = io.BytesIO()
    Image.fromarray(picture(alpha=False, width=384)).save(jpeg, format="JPEG")
    result = image_client.images.edit(
        model=MODEL_ID, prompt="a bowl of fruit on a table", size="256x256", output_format="webp",
        image=[("a.png", png(picture()), "image/png"), ("b.jpg", jpeg.getvalue(), "image/jpeg")])
    image = decoded(result.data[0].b64_json)
    assert (image.format, image.size) == ("WEBP", (256, 256))
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens > 0


def _large_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (1200, 1200, 3), dtype=np.uint8)
    data = png(noise)
    assert len(data) > 4 * 1024 * 1024
    return data


@pytest.mark.parametrize(("image", "mask", "param", "code"), [
    (("a.jpg", b"jpeg", "jpeg"), None, "image", None),
    (("wide.png", None, "wide"), None, "image", "invalid_image_dimensions"),
    (("big.png", None, "big"), None, "image", "image_too_large"),
    (("corrupt.png", None, "corrupt"), None, "image", "invalid_image"),
    (("empty.png", b"", None), None, "image", "invalid_image"),
    (("ok.png", None, None), "mismatch", "mask", "invalid_mask"),
    (("ok.png", None, None), "opaque", "mask", "invalid_mask"),
    (("ok.png", None, None), "corrupt", "mask", "invalid_image"),
])
def test_bad_images_are_refused(image_client: OpenAI, image: tuple, mask: str | None, param: str,
                                code: str | None) -> None:
    name, data, kind = image
    if kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(picture(alpha=False)).save(buffer, format="JPEG")
        data = buffer.getvalue()
    elif kind == "wide":
        data = png(picture(width=384))
    elif kind == "big":
        data = _large_png()
    elif kind == "corrupt":
        data = png(picture())[:60] + b"\x00" * 200
    elif data is None:
        data = png(picture())
    masks = {"mismatch": png(centre_hole(128)), "opaque": png(picture()),
             "corrupt": b"\x89PNG\r\n\x1a\n" + b"\x01" * 100}
    kwargs = {"mask": ("mask.png", masks[mask], "image/png")} if mask else {}
    with pytest.raises(openai.BadRequestError) as refused:
        image_client.images.edit(model="dall-e-2", image=(name, data, "image/png"), prompt="a cat",
                                 size="256x256", **kwargs)
    assert_error(refused.value, 400, param, code)
    if kind in ("wide", "corrupt", "jpeg"):
        with pytest.raises(openai.BadRequestError) as variation:
            image_client.images.create_variation(image=(name, data, "image/png"), size="256x256")
        assert_error(variation.value, 400, "image", code)


# -- variations -----------------------------------------------------------------------


def test_variations(image_client: OpenAI, image_http: httpx.Client) -> None:
    result = image_client.images.create_variation(image=("ramp.png", png(picture()), "image/png"),
                                                  n=2, size="256x256", response_format="b64_json")
    assert len(result.data) == 2
    for item in result.data:
        assert decoded(item.b64_json).size == (256, 256)
    raw = image_http.post("/v1/images/variations", data={"size": "256x256"},
                          files={"image": ("ramp.png", png(picture()), "image/png")})
    assert raw.status_code == 200, raw.text
    assert_matches_schema(raw.json(), "ImagesResponse")
    fetched = httpx.get(raw.json()["data"][0]["url"])
    assert Image.open(io.BytesIO(fetched.content)).size == (256, 256)
    for model in ("dall-e-3", "gpt-image-1"):
        with pytest.raises(openai.BadRequestError) as refused:
            image_client.images.create_variation(image=("ramp.png", png(picture()), "image/png"),
                                                 model=model)
        assert_error(refused.value, 400, "model", "model_not_supported")
    with pytest.raises(openai.BadRequestError) as bad_size:
        image_client.images.create_variation(image=("ramp.png", png(picture()), "image/png"),
                                             size="300x300")  # type: ignore[arg-type]
    assert_error(bad_size.value, 400, "size")


# -- usage ----------------------------------------------------------------------------


def test_images_are_metered_per_size_and_source(image_client: OpenAI, image_server: LiveServer) -> None:
    start = int(time.time()) - 5
    image_client.images.generate(model="dall-e-2", prompt="a heron", n=3, size="256x256",
                                 response_format="b64_json")
    image_client.images.create_variation(image=("ramp.png", png(picture()), "image/png"),
                                         size="256x256", response_format="b64_json")
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=image_server.base_url, timeout=30,
                      headers={"Authorization": f"Bearer {image_server.admin_key}"}) as admin:
        while True:
            response = admin.get("/v1/organization/usage/images", params={
                "start_time": start, "bucket_width": "1d", "group_by": ["size", "source", "model"]})
            assert response.status_code == 200, response.text
            results = [r for bucket in response.json()["data"] for r in bucket["results"]]
            counts = {(r["source"], r["size"], r["model"]): r["images"] for r in results}
            if counts.get(("image.generation", "256x256", "dall-e-2"), 0) >= 3 and \
                    counts.get(("image.variation", "256x256", "dall-e-2"), 0) >= 1:
                break
            assert time.monotonic() < deadline, counts
            time.sleep(0.5)
