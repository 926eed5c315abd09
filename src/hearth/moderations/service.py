"""Moderation: from a validated request to one result per input, scored by the local model.

A string, or each string of an array, is one input. An array of multi-modal
parts is one input too: its text parts are scored together, each image on
its own, and the input carries the worst score any part got, so one harmful
part flags it. Images arrive inline as base64 data URLs; Hearth does not
fetch them from the network.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from hearth.accounting.meter import Meter, UsageEvent
from hearth.caller import Caller
from hearth.engines.embeddings import InputTooLong
from hearth.engines.moderation import ModerationEngine
from hearth.engines.moderation import ModerationResult as EngineResult
from hearth.engines.nsfw import ImageDecodeError
from hearth.engines.runner import Admission, ModelRunner
from hearth.errors import InvalidRequest
from hearth.models.service import ModelService
from hearth.moderations.protocol import (
    CreateModerationRequest,
    CreateModerationResponse,
    ImagePart,
    InputType,
    ModerationResult,
    TextPart,
)


@dataclass
class _Input:
    texts: list[str] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    image_params: list[str] = field(default_factory=list)  # where each image came from


def _inputs(body: CreateModerationRequest) -> list[_Input]:
    """The texts and images of each input, in order."""
    if isinstance(body.input, str):
        return [_Input(texts=[body.input])]
    if not body.input:
        raise InvalidRequest("'input' must not be an empty array.", param="input")
    if isinstance(body.input[0], str):
        return [_Input(texts=[text]) for text in body.input]
    parts = _Input()
    for index, part in enumerate(body.input):
        if isinstance(part, TextPart):
            parts.texts.append(part.text)
        elif isinstance(part, ImagePart):
            param = f"input[{index}].image_url.url"
            parts.images.append(_image_bytes(part.image_url.url, param))
            parts.image_params.append(param)
    return [parts]


def _image_bytes(url: str, param: str) -> bytes:
    scheme, _, _ = url.partition(":")
    if scheme.lower() in ("http", "https"):
        raise InvalidRequest(
            "Hearth does not fetch images from the network: send the image inline as a "
            "base64 data URL (data:image/png;base64,...).",
            param=param, code="image_url_not_supported")
    header, comma, payload = url.partition(",")
    if scheme.lower() != "data" or not comma or not header.lower().endswith(";base64"):
        raise InvalidRequest("The image must be a base64 data URL (data:image/png;base64,...).",
                             param=param, code="invalid_image_url")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise InvalidRequest("The image data URL is not valid base64.", param=param,
                             code="invalid_image_url") from None


def _merged(results: Sequence[EngineResult]) -> ModerationResult:
    """One result for the parts of one input: each category's worst part decides it."""
    first = results[0]
    applied: dict[str, list[InputType]] = {}
    for category in first.categories:
        kinds = {kind for r in results for kind in r.category_applied_input_types[category]}
        applied[category] = [kind for kind in ("text", "image") if kind in kinds]
    return ModerationResult(
        flagged=any(r.flagged for r in results),
        categories={c: any(r.categories[c] for r in results) for c in first.categories},
        category_scores={c: max(r.category_scores[c] for r in results)
                         for c in first.category_scores},
        category_applied_input_types=applied,
    )


# Pieces (of at most 128 tokens) one model call scores: about half a second on two cores.
STEP_PIECES = 32


class ModerationService:
    """Moderation for any caller."""

    def __init__(self, models: ModelService, meter: Meter) -> None:
        self.models = models
        self.meter = meter

    async def create(self, caller: Caller, body: CreateModerationRequest, *,
                     background: bool = False) -> CreateModerationResponse:
        model = await self.models.load(body.model, "moderation")
        inputs = _inputs(body)
        # Every text and every image of the request go to the engine together (texts in steps),
        # then their results back to their input.
        texts = [text for item in inputs for text in item.texts]
        images = [image for item in inputs for image in item.images]
        try:
            with await self.models.admit(model, background=background) as admission:
                text_results = await self._texts(model.runner, model.engine, texts, admission)
                image_results = await model.runner.run(model.engine.classify_images, images,
                                                       admission=admission) if images else []
        except InputTooLong as exc:
            raise InvalidRequest(f"{exc} Split the text into several inputs.",
                                 param=f"input[{exc.index}]" if isinstance(body.input, list) else "input",
                                 code="context_length_exceeded") from None
        except ImageDecodeError as exc:
            params = [param for item in inputs for param in item.image_params]
            raise InvalidRequest(f"The image could not be read: {exc.reason}.",
                                 param=params[exc.index], code="invalid_image") from None
        self.meter.record(UsageEvent(caller, kind="moderations", endpoint="/v1/moderations",
                                     model=body.model, batch=background,
                                     characters=sum(len(text) for text in texts),
                                     images=len(images)))
        results, next_text, next_image = [], 0, 0
        for item in inputs:
            parts = (text_results[next_text:next_text + len(item.texts)]
                     + image_results[next_image:next_image + len(item.images)])
            next_text += len(item.texts)
            next_image += len(item.images)
            results.append(_merged(parts))
        return CreateModerationResponse(id=f"modr-{secrets.token_hex(16)}", model=body.model,
                                        results=results)

    @staticmethod
    async def _texts(runner: ModelRunner, engine: ModerationEngine, texts: list[str],
                     admission: Admission) -> list[EngineResult]:
        """Each text's result, scored ``STEP_PIECES`` pieces a model call: between the calls of a
        long request, requests waiting at the model take their turn."""
        pieces = await runner.run(engine.prepare, texts, admission=admission)
        flat = [piece for text_pieces in pieces for piece in text_pieces]
        scores = []
        for start in range(0, len(flat), STEP_PIECES):
            scores.append(await runner.run(engine.score, flat[start:start + STEP_PIECES], admission=admission))
            admission.yield_turn()
        return engine.combine(pieces, scores)
