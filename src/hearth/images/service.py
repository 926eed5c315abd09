"""Images: generations, edits and variations, painted by a local diffusion model.

The model a request names decides what it may ask for, as in the API:
``dall-e-2``, ``dall-e-3`` and the GPT image models (``gpt-image-1`` ...)
each have their sizes, prompt lengths, ``n`` limits and fields, checked here
before any work starts. Those names are served by the image model the
catalog gives them as an alias, else by the first image model installed; a
Hearth model id (``sd-turbo``, an imported folder) takes every field and any
size its network can paint (multiples of 16 pixels).

A request takes one place at the model and paints its pictures one after
another on the model's thread; a client that disconnects stops the work after
the denoising step in progress. Edits repaint only the masked area: the
pipeline works on the whole picture, and the original pixels are pasted back
outside the mask, so they come back unchanged. Pictures go back as base64 or
as signed links that expire (``links.py``), their bytes kept in the blob
store, or as a stream of events: partial pictures decoded from the latents
as the denoising goes, then each picture whole. Each request records one
usage event: its images, size and source.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio.to_thread
import numpy as np
from PIL import Image as PILImage

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.catalog.catalog import ModelSpec, UnknownModel
from hearth.engines.diffusion import Cancelled, DiffusionEngine, Partials, Picture
from hearth.engines.registry import LoadedModel
from hearth.engines.runner import Admission
from hearth.errors import APIError, InvalidRequest, NotFound
from hearth.images import pictures
from hearth.images.links import ImageLinks, new_name
from hearth.images.pictures import Decoded, Upload
from hearth.images.protocol import (
    CreateImageRequest,
    Image,
    ImageEditForm,
    ImagesResponse,
    ImagesUsage,
    ImageVariationForm,
    InputTokensDetails,
)
from hearth.models.service import ModelService
from hearth.store.blobs import BlobNotFound, BlobStore
from hearth.streams import prime

Family = Literal["dall-e-2", "dall-e-3", "gpt-image", "hearth"]
Source = Literal["image.generation", "image.edit", "image.variation"]

_DALL_E_2_SIZES = ("256x256", "512x512", "1024x1024")
_DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
_GPT_SIZES = ("1024x1024", "1536x1024", "1024x1536")
_PROMPT_LIMITS: dict[Family, int] = {"dall-e-2": 1000, "dall-e-3": 4000, "gpt-image": 32000,
                                     "hearth": 32000}
# Fields only the GPT image models take (Hearth's own model ids take them too).
_GPT_FIELDS = ("output_format", "output_compression", "background", "moderation", "input_fidelity")
_QUALITIES: dict[Family, tuple[str, ...]] = {
    "dall-e-2": ("standard", "auto"), "dall-e-3": ("standard", "hd", "auto"),
    "gpt-image": ("low", "medium", "high", "auto"),
    "hearth": ("standard", "hd", "low", "medium", "high", "auto"),
}
# The largest picture asked of any model: the GPT image models' 3840x2160, in pixels.
MAX_PIXELS = 3840 * 2160
MAX_EDGE = 3840
_SIZE = re.compile(r"(\d{2,4})x(\d{2,4})")
# dall-e-2 takes one square PNG under 4 MB; the GPT image models up to 16 PNG, WebP or JPEG under 50 MB.
DALL_E_MAX_BYTES = 4 * pictures.MB
GPT_MAX_BYTES = 50 * pictures.MB
MAX_EDIT_IMAGES = 16
# How far a variation, and an edit without a mask, may stray from the picture it starts from.
VARIATION_STRENGTH = 0.6
EDIT_STRENGTH = {"low": 0.8, "high": 0.5}
# What a tool-less dall-e-3 adds to a prompt for its style.
_STYLE_HINTS = {"vivid": ", vivid, dramatic, hyper-real", "natural": ", natural, realistic"}
OPENAI_IMAGE_MODEL = re.compile(r"dall-e-[23]|gpt-image-.+|chatgpt-image-latest")


class ModerationBlocked(InvalidRequest):
    type = "image_generation_user_error"


def family_of(name: str) -> Family:
    if name == "dall-e-2":
        return "dall-e-2"
    if name == "dall-e-3":
        return "dall-e-3"
    if name.startswith("gpt-image-") or name == "chatgpt-image-latest":
        return "gpt-image"
    return "hearth"


def no_image_model(name: str) -> NotFound:
    return NotFound(
        f"The model `{name}` is not available: no image model is installed on this server. Pull "
        "one (`hearth models pull hf:stabilityai/sd-turbo`) or import a diffusers folder "
        "(`hearth models import PATH`), then restart the server.",
        param="model", code="model_not_found")


@dataclass
class Plan:
    """A request, checked: what to paint and how to answer."""

    source: Source
    endpoint: str
    model_name: str
    family: Family
    spec: ModelSpec
    prompt: str
    n: int
    width: int
    height: int
    quality: str  # as asked (auto resolved at answer time)
    response_format: str
    output_format: str
    compression: int | None
    transparent: bool
    moderate: bool
    style: str | None = None
    # Edits and variations: the picture to start from, and the area to repaint (None: all of it).
    start: PILImage.Image | None = None
    region: np.ndarray | None = None
    strength: float = 1.0
    input_images: list[Decoded] = field(default_factory=list)
    stream: bool = False
    partial_images: int = 0

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def _field_set(body: Any, name: str) -> bool:
    return getattr(body, name, None) is not None


def _default_model(body: Any, default: str = "dall-e-2") -> str:
    """The spec's rule: dall-e-2 unless a field only the GPT image models take is used."""
    if body.model:
        return str(body.model)
    gpt_only = any(_field_set(body, name) for name in _GPT_FIELDS) or \
        getattr(body, "quality", None) in ("low", "medium", "high") or bool(getattr(body, "stream", False))
    return "gpt-image-1" if gpt_only else default


def _parse_size(text: str, param: str = "size") -> tuple[int, int]:
    match = _SIZE.fullmatch(text)
    if match is None:
        raise InvalidRequest(f"Invalid size '{text}': expected WIDTHxHEIGHT, e.g. 1024x1024.",
                             param=param, code="invalid_size")
    return int(match[1]), int(match[2])


def _size(family: Family, model_name: str, size: str | None, *,
          spec: ModelSpec, auto_from: tuple[int, int] | None = None) -> tuple[int, int]:
    """The size to paint at, checked against what the model family allows."""
    if family == "dall-e-2":
        allowed: tuple[str, ...] | None = _DALL_E_2_SIZES
        default = "1024x1024"
    elif family == "dall-e-3":
        allowed, default = _DALL_E_3_SIZES, "1024x1024"
    elif family == "gpt-image" and not model_name.startswith("gpt-image-2"):
        allowed, default = (*_GPT_SIZES, "auto"), "auto"
    else:
        allowed, default = None, "auto"
    size = size or default
    if allowed is not None and size not in allowed:
        raise InvalidRequest(f"Invalid size '{size}' for {model_name}: use one of "
                             f"{', '.join(allowed)}.", param="size", code="invalid_size")
    if size == "auto":
        if family == "hearth":
            native = str(spec.options.get("size", "512x512"))
            if auto_from is None:
                return _parse_size(native)
            # An edit keeps its picture's shape at the model's native area, in steps of 16.
            side = _parse_size(native)[0]
            ratio = auto_from[0] / auto_from[1]
            return (max(64, round(side * ratio ** 0.5 / 16) * 16),
                    max(64, round(side / ratio ** 0.5 / 16) * 16))
        if auto_from is not None and auto_from[0] != auto_from[1]:
            return (1536, 1024) if auto_from[0] > auto_from[1] else (1024, 1536)
        return 1024, 1024
    width, height = _parse_size(size)
    if allowed is None:
        if width % 16 or height % 16:
            raise InvalidRequest(f"Invalid size '{size}': width and height must be multiples of 16.",
                                 param="size", code="invalid_size")
        if not (64 <= width <= MAX_EDGE and 64 <= height <= MAX_EDGE) or width * height > MAX_PIXELS:
            raise InvalidRequest(f"Invalid size '{size}': each side must be 64 to {MAX_EDGE} pixels "
                                 f"and the picture at most {MAX_PIXELS} pixels.", param="size",
                                 code="invalid_size")
        if max(width, height) > 3 * min(width, height):
            raise InvalidRequest(f"Invalid size '{size}': the aspect ratio must be between 1:3 and 3:1.",
                                 param="size", code="invalid_size")
    return width, height


def _check_family_fields(body: Any, family: Family, model_name: str) -> None:
    if family in ("dall-e-2", "dall-e-3"):
        for name in _GPT_FIELDS:
            if _field_set(body, name):
                raise InvalidRequest(f"The `{name}` parameter is only supported for the GPT image "
                                     f"models, not {model_name}.", param=name,
                                     code="unsupported_parameter")
    if _field_set(body, "style") and family not in ("dall-e-3", "hearth"):
        raise InvalidRequest(f"The `style` parameter is only supported for dall-e-3, not {model_name}.",
                             param="style", code="unsupported_parameter")
    quality = getattr(body, "quality", None)
    if quality is not None and quality not in _QUALITIES[family]:
        raise InvalidRequest(f"Invalid quality '{quality}' for {model_name}: use one of "
                             f"{', '.join(_QUALITIES[family])}.", param="quality",
                             code="invalid_value")
    if family == "gpt-image" and body.response_format == "url":
        raise InvalidRequest(f"response_format `url` is not supported for {model_name}: the GPT "
                             "image models always return base64-encoded images (b64_json).",
                             param="response_format", code="unsupported_parameter")
    if getattr(body, "stream", None) and family not in ("gpt-image", "hearth"):
        raise InvalidRequest(f"Streaming is only supported for the GPT image models, not {model_name}.",
                             param="stream", code="unsupported_parameter")


def _default_response_format(family: Family) -> str:
    """dall-e answers with links unless asked; the GPT image models (and Hearth's ids) with base64."""
    return "url" if family in ("dall-e-2", "dall-e-3") else "b64_json"


def _output(body: Any) -> tuple[str, int | None, bool]:
    output_format = getattr(body, "output_format", None) or "png"
    compression = getattr(body, "output_compression", None)
    if compression is not None and output_format == "png" and compression != 100:
        raise InvalidRequest("output_compression applies to the jpeg and webp output formats only.",
                             param="output_compression", code="unsupported_parameter")
    transparent = getattr(body, "background", None) == "transparent"
    if transparent and output_format == "jpeg":
        raise InvalidRequest("A transparent background needs an output format with transparency: "
                             "set output_format to png or webp.", param="background",
                             code="unsupported_parameter")
    return output_format, compression, transparent


def _check_prompt(prompt: str, family: Family, model_name: str) -> None:
    if not prompt.strip():
        raise InvalidRequest("The prompt must not be empty.", param="prompt")
    limit = _PROMPT_LIMITS[family]
    if len(prompt) > limit:
        raise InvalidRequest(f"The prompt is {len(prompt)} characters long; the maximum for "
                             f"{model_name} is {limit} characters.", param="prompt",
                             code="string_above_max_length")


def _steps(engine: DiffusionEngine, quality: str) -> int:
    if quality == "low":
        return 1
    if quality in ("high", "hd"):
        return 2 * engine.steps
    return engine.steps


def _image_tokens(width: int, height: int) -> int:
    """Image tokens as Hearth counts them: one per 16x16 pixels (a 2x2 patch of latents)."""
    return (width // 16) * (height // 16)


class _Expiring:
    """Blobs of this process's links, deleted once their links expire (checked as new ones come)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def add(self, expires: int, key: str) -> None:
        with self._lock:
            heapq.heappush(self._heap, (expires, key))

    def due(self, now: float) -> list[str]:
        with self._lock:
            keys = []
            while self._heap and self._heap[0][0] <= now:
                keys.append(heapq.heappop(self._heap)[1])
            return keys


class ImageService:
    """Generations, edits and variations for any caller, and the pictures behind links."""

    BLOB_PREFIX = "images/"

    def __init__(self, models: ModelService, meter: Meter, blobs: BlobStore, links: ImageLinks) -> None:
        self.models = models
        self.meter = meter
        self.blobs = blobs
        self.links = links
        self._expiring = _Expiring()

    # -- the three endpoints ----------------------------------------------------------

    async def generate(self, caller: Caller, body: CreateImageRequest, *, base_url: str = "") -> ImagesResponse:
        return await self.run(caller, self.plan_generation(body), base_url=base_url)

    async def edit(self, caller: Caller, form: ImageEditForm, images: list[Upload],
                   mask: Upload | None, *, base_url: str = "") -> ImagesResponse:
        return await self.run(caller, await self.plan_edit(form, images, mask), base_url=base_url)

    def plan_generation(self, body: CreateImageRequest) -> Plan:
        """The generation ``body`` asks for, checked (every refusal is raised here)."""
        name = _default_model(body)
        family = family_of(name)
        _check_family_fields(body, family, name)
        _check_prompt(body.prompt, family, name)
        if family == "dall-e-3" and (body.n or 1) != 1:
            raise InvalidRequest("dall-e-3 supports only n=1.", param="n", code="invalid_value")
        spec = self._resolve(name, prefer_inpainting=False)
        width, height = _size(family, name, body.size, spec=spec)
        output_format, compression, transparent = _output(body)
        plan = Plan("image.generation", "/v1/images/generations", name, family, spec, body.prompt,
                    body.n or 1, width, height, body.quality or "auto",
                    body.response_format or _default_response_format(family),
                    output_format, compression, transparent, body.moderation != "low",
                    style=body.style or ("vivid" if family == "dall-e-3" else None),
                    stream=bool(body.stream), partial_images=body.partial_images or 0)
        return plan

    async def plan_edit(self, form: ImageEditForm, images: list[Upload], mask: Upload | None) -> Plan:
        """The edit a form and its pictures ask for, checked and decoded."""
        name = _default_model(form)
        family = family_of(name)
        if family == "dall-e-3":
            raise InvalidRequest("dall-e-3 does not edit images; use dall-e-2 or a GPT image model.",
                                 param="model", code="model_not_supported")
        _check_family_fields(form, family, name)
        _check_prompt(form.prompt, family, name)
        if not images:
            raise InvalidRequest("Missing required parameter: 'image'.", param="image")
        if family == "dall-e-2" and len(images) > 1:
            raise InvalidRequest("dall-e-2 edits exactly one image; the GPT image models take up "
                                 f"to {MAX_EDIT_IMAGES}.", param="image")
        if len(images) > MAX_EDIT_IMAGES:
            raise InvalidRequest(f"At most {MAX_EDIT_IMAGES} images can be edited together.",
                                 param="image")
        spec = self._resolve(name, prefer_inpainting=True)
        output_format, compression, transparent = _output(form)
        dall_e = family == "dall-e-2"
        decoded, region = await anyio.to_thread.run_sync(_read_edit, images, mask, dall_e)
        width, height = _size(family, name, form.size, spec=spec,
                              auto_from=decoded[0].image.size)
        start, region = await anyio.to_thread.run_sync(_starting_picture, decoded, region, width, height)
        plan = Plan("image.edit", "/v1/images/edits", name, family, spec, form.prompt, form.n or 1,
                    width, height, form.quality or "auto",
                    form.response_format or _default_response_format(family),
                    output_format, compression, transparent, True, start=start, region=region,
                    strength=1.0 if region is not None else EDIT_STRENGTH[form.input_fidelity or "low"],
                    input_images=decoded, stream=bool(form.stream),
                    partial_images=form.partial_images or 0)
        return plan

    async def vary(self, caller: Caller, form: ImageVariationForm, image: Upload | None, *,
                   base_url: str = "") -> ImagesResponse:
        name = form.model or "dall-e-2"
        family = family_of(name)
        if family in ("dall-e-3", "gpt-image"):
            raise InvalidRequest(f"{name} does not make variations; only dall-e-2 does.",
                                 param="model", code="model_not_supported")
        if image is None:
            raise InvalidRequest("Missing required parameter: 'image'.", param="image")
        spec = self._resolve(name, prefer_inpainting=False)
        decoded = await anyio.to_thread.run_sync(
            lambda: pictures.decode(image, formats=("png",), max_bytes=DALL_E_MAX_BYTES, square=True))
        width, height = _size(family, name, form.size or "1024x1024", spec=spec)
        start = await anyio.to_thread.run_sync(pictures.fit, decoded.image, width, height)
        plan = Plan("image.variation", "/v1/images/variations", name, family, spec, "", form.n or 1,
                    width, height, "auto", form.response_format or "url", "png", None, False, False,
                    start=start, strength=VARIATION_STRENGTH)
        return await self.run(caller, plan, base_url=base_url)

    # -- links ------------------------------------------------------------------------

    async def content(self, name: str, expires: str | None, signature: str | None) -> tuple[bytes, str]:
        """The bytes and media type behind a signed link."""
        self.links.check(name, expires, signature)
        stem, _, ext = name.rpartition(".")
        if not stem or ext not in ("png", "jpeg", "webp"):
            raise NotFound("No such image.", code="not_found")
        try:
            data = await anyio.to_thread.run_sync(self._read_blob, self.BLOB_PREFIX + name)
        except BlobNotFound:
            raise NotFound("No such image; it may have expired.", code="not_found") from None
        return data, pictures.media_type(ext)

    def _read_blob(self, key: str) -> bytes:
        with self.blobs.open(key) as fh:
            return fh.read()

    # -- the work ---------------------------------------------------------------------

    def _resolve(self, name: str, *, prefer_inpainting: bool) -> ModelSpec:
        """The image model a name means: its catalog entry, or for OpenAI's names the installed one."""
        try:
            return self.models.resolve(name, "image")
        except NotFound:
            if not OPENAI_IMAGE_MODEL.fullmatch(name):
                known = self._catalog_image_model(name)
                if known is None:
                    raise
                raise NotFound(
                    f"The model `{name}` is not installed on this server. Pull it (`hearth models "
                    f"pull {known.id}`) or import a diffusers folder (`hearth models import PATH`), "
                    "then restart the server.", param="model", code="model_not_found") from None
        installed = self.models.servable("image")
        if not installed:
            raise no_image_model(name)
        if prefer_inpainting:
            installed.sort(key=lambda spec: not spec.options.get("inpainting", False))
        return installed[0]

    def _catalog_image_model(self, name: str) -> ModelSpec | None:
        try:
            spec = self.models.registry.catalog.resolve(name)
        except UnknownModel:
            return None
        return spec if spec.kind == "image" else None

    async def run(self, caller: Caller, plan: Plan, *, base_url: str = "") -> ImagesResponse:
        """Paint a plan's pictures and answer them whole.

        Cancelled (the HTTP layer cancels when the client hangs up), it stops
        painting after the denoising step in progress; finished pictures are metered.
        """
        model = await self.models.get(plan.spec)
        engine: DiffusionEngine = model.engine
        if plan.moderate:
            await self._moderate(plan)
        created = int(time.time())
        stop = threading.Event()
        pictures_done: list[Picture] = []
        with await self.models.admit(model) as admission:
            try:
                for _ in range(plan.n):
                    picture = await model.runner.run(_paint, engine, plan, stop.is_set,
                                                     admission=admission)
                    pictures_done.append(picture)
            except asyncio.CancelledError:
                stop.set()
                raise
            finally:
                if pictures_done:
                    self._record(caller, plan, len(pictures_done))
        encoded = await anyio.to_thread.run_sync(_encode_all, plan, pictures_done)
        data = [await self._answer(plan, blob, picture, base_url)
                for blob, picture in zip(encoded, pictures_done, strict=True)]
        return self._response(plan, engine, created, data)

    async def stream(self, caller: Caller, plan: Plan) -> AsyncIterator[dict[str, Any]]:
        """Paint a plan's pictures as events: partial pictures as they come, then each one whole.

        Every refusal (moderation, a full queue) is raised before the first
        event; a consumer that stops closes the stream, which stops the
        painting after the denoising step in progress.
        """
        model = await self.models.get(plan.spec)
        if plan.moderate:
            await self._moderate(plan)
        admission = await self.models.admit(model)
        try:
            return await prime(self._events(caller, plan, model, admission))
        except BaseException:
            admission.release()
            raise

    async def _events(self, caller: Caller, plan: Plan, model: LoadedModel,
                      admission: Admission) -> AsyncIterator[dict[str, Any]]:
        engine: DiffusionEngine = model.engine
        kind = "image_generation" if plan.source == "image.generation" else "image_edit"
        common = {"size": plan.size, "quality": _quality_named(plan.quality),
                  "background": "transparent" if plan.transparent else "opaque",
                  "output_format": plan.output_format}
        done = 0
        items = model.runner.stream(lambda: _paint_stream(engine, plan), admission=admission)
        try:
            async for step, index, image in items:
                blob = await anyio.to_thread.run_sync(_encode_one, plan, image)
                event: dict[str, Any] = {"type": f"{kind}.{step}",
                                         "b64_json": base64.b64encode(blob).decode("ascii"),
                                         "created_at": int(time.time()), **common}
                if step == "partial_image":
                    event["partial_image_index"] = index
                else:
                    done += 1
                    event["usage"] = self._usage(plan, engine, 1).model_dump()
                yield event
        finally:
            await items.aclose()
            if done:
                self._record(caller, plan, done)

    async def _moderate(self, plan: Plan) -> None:
        """The prompt (and an edit's pictures) through the moderation model, when one is installed."""
        checkers = self.models.servable("moderation")
        if not checkers:
            return
        checker = await self.models.get(checkers[0])
        images = [pictures.encode(d.image, "png", None, transparent=False) for d in plan.input_images]
        with await self.models.admit(checker) as admission:
            texts, seen = await checker.runner.run(_classify, checker, plan.prompt, images,
                                                   admission=admission)
        if any(result.flagged for result in (*texts, *seen)):
            what = "prompt" if any(r.flagged for r in texts) else "image"
            raise ModerationBlocked(
                f"Your request was rejected by the safety system: the {what} was flagged by "
                "moderation. Set moderation=low to relax it where your policy allows.",
                param="prompt" if what == "prompt" else "image", code="moderation_blocked")

    def _record(self, caller: Caller, plan: Plan, images: int) -> None:
        self.meter.record(UsageEvent(caller, kind="images", endpoint=plan.endpoint,
                                     model=plan.model_name, size=plan.size, source=plan.source,
                                     images=images))

    async def _answer(self, plan: Plan, blob: bytes, picture: Picture, base_url: str) -> Image:
        revised = picture.prompt_used if plan.family == "dall-e-3" else None
        if plan.response_format == "b64_json":
            return Image(b64_json=base64.b64encode(blob).decode("ascii"), revised_prompt=revised)
        name = new_name(plan.output_format)
        await anyio.to_thread.run_sync(self._store, name, blob)
        path, expires = self.links.sign(name)
        self._expiring.add(expires, self.BLOB_PREFIX + name)
        return Image(url=base_url.rstrip("/") + path, revised_prompt=revised)

    def _store(self, name: str, blob: bytes) -> None:
        self.blobs.put(self.BLOB_PREFIX + name, [blob])
        for key in self._expiring.due(time.time()):
            self.blobs.delete(key)

    @staticmethod
    def _usage(plan: Plan, engine: DiffusionEngine, pictures_made: int) -> ImagesUsage:
        text_tokens = engine.count_tokens(plan.prompt) if plan.prompt else 0
        image_tokens = sum(_image_tokens(*d.image.size) for d in plan.input_images)
        output_tokens = pictures_made * _image_tokens(plan.width, plan.height)
        return ImagesUsage(input_tokens=text_tokens + image_tokens, output_tokens=output_tokens,
                           total_tokens=text_tokens + image_tokens + output_tokens,
                           input_tokens_details=InputTokensDetails(text_tokens=text_tokens,
                                                                   image_tokens=image_tokens))

    def _response(self, plan: Plan, engine: DiffusionEngine, created: int,
                  data: list[Image]) -> ImagesResponse:
        if plan.family in ("dall-e-2", "dall-e-3") or plan.source == "image.variation":
            return ImagesResponse(created=created, data=data)
        return ImagesResponse(created=created, data=data,
                              background="transparent" if plan.transparent else "opaque",
                              output_format=plan.output_format,  # type: ignore[arg-type]
                              size=plan.size, quality=_quality_named(plan.quality),  # type: ignore[arg-type]
                              usage=self._usage(plan, engine, plan.n))


def _classify(checker: LoadedModel, prompt: str, images: list[bytes]) -> tuple[list[Any], list[Any]]:
    texts = checker.engine.classify([prompt]) if prompt else []
    seen = checker.engine.classify_images(images) if images else []
    return texts, seen


def _read_edit(images: list[Upload], mask: Upload | None, dall_e: bool
               ) -> tuple[list[Decoded], np.ndarray | None]:
    """Runs in a worker thread: the edit's pictures decoded and its area to repaint found."""
    formats = ("png",) if dall_e else ("png", "webp", "jpeg")
    max_bytes = DALL_E_MAX_BYTES if dall_e else GPT_MAX_BYTES
    decoded = [pictures.decode(upload, formats=formats, max_bytes=max_bytes, square=dall_e)
               for upload in images]
    if mask is not None:
        mask_picture = pictures.decode(mask, formats=("png",), max_bytes=max(DALL_E_MAX_BYTES, max_bytes),
                                       square=False)
        return decoded, pictures.mask_region(mask_picture, decoded[0], mask.filename)
    region = pictures.transparent_region(decoded[0])
    if region is None and dall_e:
        raise InvalidRequest("The image has no transparent area to edit: send a mask, or an image "
                             "whose fully transparent pixels mark the area to edit.", param="mask",
                             code="invalid_mask")
    return decoded, region


def _starting_picture(decoded: list[Decoded], region: np.ndarray | None, width: int, height: int
                      ) -> tuple[PILImage.Image, np.ndarray | None]:
    """The one picture the model starts from at the output size, and the area it repaints there."""
    if len(decoded) == 1:
        start = pictures.fit(decoded[0].image, width, height)
        return start, None if region is None else pictures.fit_region(region, width, height)
    start, (left, top, right, bottom) = pictures.collage([d.image for d in decoded], width, height)
    if region is None:
        return start, None
    # The mask applies to the first picture: repaint its masked part of the grid, keep the rest.
    full = np.zeros((height, width), dtype=bool)
    full[top:bottom, left:right] = pictures.fit_region(region, right - left, bottom - top)
    return start, full


def _paint(engine: DiffusionEngine, plan: Plan, cancelled: Callable[[], bool],
           partial: Callable[[PILImage.Image], None] | None = None) -> Picture:
    """Runs on the model's thread: one picture of the plan (and its partial pictures, if asked)."""
    steps = _steps(engine, plan.quality)
    prompt = plan.prompt + (_STYLE_HINTS[plan.style] if plan.style else "")
    if plan.transparent:
        prompt += pictures.TRANSPARENT_HINT
    start, region = plan.start, plan.region
    partials = None
    if partial is not None:
        emit = partial
        if start is not None and region is not None:
            def emit(image: PILImage.Image) -> None:
                assert start is not None and region is not None
                partial(pictures.composite(image, start, region))
        partials = Partials(plan.partial_images, emit)
    if start is None:
        return engine.generate(prompt, width=plan.width, height=plan.height, steps=steps,
                               cancelled=cancelled, partials=partials)
    if region is None:
        return engine.vary(prompt, start, strength=plan.strength, steps=steps, cancelled=cancelled,
                           partials=partials)
    mask = PILImage.fromarray(region.astype(np.uint8) * 255, "L")
    painted = engine.inpaint(prompt, start, mask, steps=steps, cancelled=cancelled, partials=partials)
    # Only the masked area changes: every other pixel is the original's.
    return Picture(pictures.composite(painted.image, start, region), painted.prompt_used)


def _paint_stream(engine: DiffusionEngine, plan: Plan) -> Iterator[tuple[str, int, PILImage.Image]]:
    """Pulled on the model's thread: ``("partial_image", index, picture)`` as the denoising goes,
    then ``("completed", n, picture)``, for each picture of the plan.

    The pipeline runs in a helper thread that hands over each partial picture
    as it is decoded, while the model's thread waits for it (so the model
    still paints one picture at a time). Closing the generator stops the
    pipeline after its current step.
    """
    for number in range(plan.n):
        handed: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()
        worker = threading.Thread(target=_paint_handing_over, args=(engine, plan, handed, stop),
                                  name="hearth-image-stream", daemon=True)
        worker.start()
        try:
            partial_index = 0
            while True:
                what, value = handed.get()
                if what == "partial":
                    yield "partial_image", partial_index, value
                    partial_index += 1
                elif what == "done":
                    yield "completed", number, value.image
                    break
                else:
                    raise value
        finally:
            stop.set()
            worker.join()


def _paint_handing_over(engine: DiffusionEngine, plan: Plan, handed: queue.Queue[tuple[str, Any]],
                        stop: threading.Event) -> None:
    """The helper thread of ``_paint_stream``: partial pictures, then the picture or its error."""
    try:
        picture = _paint(engine, plan, stop.is_set, lambda image: handed.put(("partial", image)))
        handed.put(("done", picture))
    except BaseException as exc:  # noqa: BLE001 (handed to the consumer)
        handed.put(("error", exc))


def _quality_named(quality: str) -> str:
    """The quality as the GPT image models report it."""
    return {"low": "low", "high": "high", "hd": "high"}.get(quality, "medium")


def _encode_one(plan: Plan, image: PILImage.Image) -> bytes:
    keyed = pictures.key_out_background(image) if plan.transparent else image
    return pictures.encode(keyed, plan.output_format, plan.compression, transparent=plan.transparent)


def _encode_all(plan: Plan, done: list[Picture]) -> list[bytes]:
    return [_encode_one(plan, picture.image) for picture in done]


__all__ = ["APIError", "Cancelled", "ImageService", "ModerationBlocked"]
