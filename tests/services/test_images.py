"""ImageService over a fake painter: links and their expiry, metering, moderation, masks, stopping.

The fake paints flat colours instantly, so these check what the service
decides; the real pipeline runs in tests/images and tests/engines.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from hearth.accounting.meter import RecordingMeter
from hearth.catalog.catalog import Catalog, ModelSpec
from hearth.catalog.provision import ModelStore
from hearth.engines.diffusion import Cancelled, Picture
from hearth.engines.registry import LoadedModel, ModelRegistry
from hearth.engines.runner import ModelRunner
from hearth.errors import NotFound
from hearth.images.links import ImageLinks
from hearth.images.pictures import Upload
from hearth.images.protocol import CreateImageRequest, ImageEditForm
from hearth.images.service import ImageService, ModerationBlocked
from hearth.models.service import ModelService
from hearth.settings import Settings
from hearth.store.blobs import LocalBlobStore
from tests.services.conftest import CALLER, FakeModeration


class FakePainter:
    """Paints every picture one flat colour; the prompt ``wait`` paints until it is cancelled."""

    steps = 2
    queue_depth = 2

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def count_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    def prompt_used(self, prompt: str) -> str:
        return prompt

    def generate(self, prompt: str, *, width: int, height: int, steps: int | None = None,
                 cancelled: Callable[[], bool] = lambda: False, **_: Any) -> Picture:
        self.calls.append(("generate", (width, height, steps)))
        deadline = time.monotonic() + 60
        while prompt.startswith("wait") and time.monotonic() < deadline:
            if cancelled():
                raise Cancelled
            time.sleep(0.01)
        return Picture(Image.new("RGB", (width, height), (10, 200, 10)), prompt)

    def vary(self, prompt: str, image: Image.Image, *, strength: float, **_: Any) -> Picture:
        self.calls.append(("vary", strength))
        return Picture(Image.new("RGB", image.size, (0, 0, 255)), prompt)

    def inpaint(self, prompt: str, image: Image.Image, mask: Image.Image, **_: Any) -> Picture:
        self.calls.append(("inpaint", np.asarray(mask) > 127))
        return Picture(Image.new("RGB", image.size, (0, 0, 0)), prompt)


def _spec(id_: str, kind: str, engine: str) -> ModelSpec:
    return ModelSpec(id=id_, kind=kind, engine=engine, description="fake", owned_by="hearth", created=0)


class Images:
    def __init__(self, root: Path, *, painter: bool = True, ttl: int = 3600) -> None:
        specs = [_spec("fake-painter", "image", "diffusers"), _spec("fake-moderation", "moderation", "moderation")]
        self.registry = ModelRegistry(Catalog(specs), ModelStore(root / "models"), Settings())
        self.painter = FakePainter()
        engines: dict[str, Any] = {"fake-moderation": FakeModeration()}
        if painter:
            engines["fake-painter"] = self.painter
        for spec in specs:
            if spec.id in engines:
                self.registry._loaded[spec.id] = LoadedModel(spec, engines[spec.id],
                                                             ModelRunner(spec.id, workers=1, queue_depth=2))
        self.meter = RecordingMeter()
        self.service = ImageService(ModelService(self.registry), self.meter, LocalBlobStore(root / "blobs"),
                                    ImageLinks(b"k" * 32, ttl))


@pytest.fixture
def images(tmp_path: Path) -> Iterator[Images]:
    made = Images(tmp_path)
    yield made
    made.registry.shutdown()


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def generate(images: Images, **fields: Any) -> Any:
    body = CreateImageRequest.model_validate({"prompt": "a fox", "model": "dall-e-2", "size": "256x256", **fields})
    return asyncio.run(images.service.generate(CALLER, body, base_url="http://hearth.test/"))


def test_links_serve_the_picture_until_they_expire(images: Images) -> None:
    response = generate(images)
    url = response.data[0].url
    assert url.startswith("http://hearth.test/v1/images/content/")
    name, _, query = url.removeprefix("http://hearth.test/v1/images/content/").partition("?")
    params = dict(part.split("=") for part in query.split("&"))
    data, media_type = asyncio.run(images.service.content(name, params["expires"], params["signature"]))
    assert media_type == "image/png" and Image.open(io.BytesIO(data)).size == (256, 256)
    # The same link checked an hour and a moment later.
    later = int(params["expires"]) + 1
    with pytest.raises(NotFound, match="expired"):
        images.service.links.check(name, params["expires"], params["signature"], now=later)


def test_a_link_with_no_time_to_live_has_expired_at_once(tmp_path: Path) -> None:
    made = Images(tmp_path, ttl=0)
    try:
        url = generate(made).data[0].url
        name, _, query = url.rsplit("/", 1)[1].partition("?")
        params = dict(part.split("=") for part in query.split("&"))
        with pytest.raises(NotFound) as expired:
            asyncio.run(made.service.content(name, params["expires"], params["signature"]))
        assert expired.value.code == "image_url_expired"
    finally:
        made.registry.shutdown()


def test_each_request_records_its_images_size_and_source(images: Images) -> None:
    generate(images, n=3, response_format="b64_json")
    form = ImageEditForm(prompt="a hat", model="gpt-image-1", size="1024x1024")
    holed = np.full((64, 64, 4), 255, np.uint8)
    holed[:32, :, 3] = 0
    asyncio.run(images.service.edit(CALLER, form, [Upload("image", "a.png", png(holed))], None))
    generation, edit = images.meter.events
    assert (generation.kind, generation.endpoint, generation.model, generation.size, generation.source,
            generation.images) == ("images", "/v1/images/generations", "dall-e-2", "256x256",
                                   "image.generation", 3)
    assert (edit.endpoint, edit.model, edit.size, edit.source, edit.images) == \
        ("/v1/images/edits", "gpt-image-1", "1024x1024", "image.edit", 1)


def test_quality_sets_the_steps(images: Images) -> None:
    for quality, steps in (("low", 1), ("medium", 2), ("high", 4)):
        generate(images, model="gpt-image-1", size="1024x1024", quality=quality)
        assert images.painter.calls[-1] == ("generate", (1024, 1024, steps))


def test_flagged_prompts_are_blocked_before_painting(images: Images) -> None:
    with pytest.raises(ModerationBlocked) as blocked:
        generate(images, prompt="kill them all")
    assert (blocked.value.code, blocked.value.type, blocked.value.param) == \
        ("moderation_blocked", "image_generation_user_error", "prompt")
    assert images.painter.calls == [] and images.meter.events == []
    generate(images, model="gpt-image-1", size="1024x1024", prompt="kill them all", moderation="low")
    assert len(images.painter.calls) == 1


def test_without_an_image_model_openai_names_say_how_to_get_one(tmp_path: Path) -> None:
    made = Images(tmp_path, painter=False)
    try:
        for model in ("dall-e-2", "gpt-image-1"):
            with pytest.raises(NotFound) as missing:
                generate(made, model=model, size="1024x1024")
            assert missing.value.code == "model_not_found"
            assert "hearth models pull" in missing.value.message
            assert "hearth models import" in missing.value.message
        with pytest.raises(NotFound) as unpulled:
            generate(made, model="fake-painter")
        assert "hearth models pull fake-painter" in unpulled.value.message
        with pytest.raises(NotFound) as unknown:
            generate(made, model="no-such-model")
        assert unknown.value.code == "model_not_found"
    finally:
        made.registry.shutdown()


def test_the_mask_of_several_images_applies_to_the_first_one_only(images: Images) -> None:
    first = np.full((64, 64, 4), 200, np.uint8)
    mask = np.full((64, 64, 4), 255, np.uint8)
    mask[:, :32, 3] = 0  # the left half of the first picture
    second = np.full((64, 64, 4), 90, np.uint8)
    form = ImageEditForm(prompt="blend", model="fake-painter", size="256x128", response_format="b64_json")
    response = asyncio.run(images.service.edit(
        CALLER, form, [Upload("image[0]", "a.png", png(first)), Upload("image[1]", "b.png", png(second))],
        Upload("mask", "m.png", png(mask))))
    painted = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.data[0].b64_json))).convert("RGB"))
    assert painted.shape == (128, 256, 3)
    # Two cells of 128x128; the first picture fills the left one, its left half is repainted (black).
    assert (painted[:, :64] == 0).all()
    assert (painted[:, 64:128] == 200).all()
    assert (painted[:, 128:] == 90).all()


def test_a_client_that_leaves_stops_the_painting(images: Images) -> None:
    """The HTTP layer cancels the call when its client hangs up."""
    body = CreateImageRequest(prompt="wait for it", model="dall-e-2", size="256x256", n=3)

    async def leave_while_painting() -> None:
        painting = asyncio.ensure_future(images.service.generate(CALLER, body))
        while not images.painter.calls:
            await asyncio.sleep(0.01)
        painting.cancel()
        await painting

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(leave_while_painting())
    assert len(images.painter.calls) == 1  # the first picture stopped; the others never started
    assert images.meter.events == []
