"""Moderation: from a validated request to one result per input, scored by the local model.

A string, or each string of an array, is one input. An array of multi-modal
parts is one input too: its text parts are scored together, and the input
carries the worst score any part got, so one harmful part flags it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from hearth.api.errors import InvalidRequest
from hearth.engines.moderation import ModerationResult as EngineResult
from hearth.engines.registry import LoadedModel
from hearth.protocol.moderations import (
    CreateModerationRequest,
    CreateModerationResponse,
    ImagePart,
    ModerationResult,
    TextPart,
)


def _inputs(body: CreateModerationRequest) -> list[list[str]]:
    """The texts of each input, in order; refuses what the local models cannot read."""
    if isinstance(body.input, str):
        return [[body.input]]
    if not body.input:
        raise InvalidRequest("'input' must not be an empty array.", param="input")
    if isinstance(body.input[0], str):
        return [[text] for text in body.input]
    for index, part in enumerate(body.input):
        if isinstance(part, ImagePart):
            raise InvalidRequest(
                "Image inputs cannot be moderated: no image moderation model is configured on "
                "this server. Send text parts only.",
                param=f"input[{index}]", code="image_input_not_supported")
    return [[part.text for part in body.input if isinstance(part, TextPart)]]


def _merged(results: Sequence[EngineResult]) -> ModerationResult:
    """One result for the parts of one input: each category's worst part decides it."""
    first = results[0]
    return ModerationResult(
        flagged=any(r.flagged for r in results),
        categories={c: any(r.categories[c] for r in results) for c in first.categories},
        category_scores={c: max(r.category_scores[c] for r in results)
                         for c in first.category_scores},
        category_applied_input_types=first.category_applied_input_types,
    )


async def create_moderation(model: LoadedModel, body: CreateModerationRequest
                            ) -> CreateModerationResponse:
    inputs = _inputs(body)
    # Every text of the request goes to the engine in one call, then back to its input.
    flat = [text for texts in inputs for text in texts]
    scored = await model.runner.run(model.engine.classify, flat)
    results, start = [], 0
    for texts in inputs:
        results.append(_merged(scored[start : start + len(texts)]))
        start += len(texts)
    return CreateModerationResponse(id=f"modr-{secrets.token_hex(16)}", model=body.model,
                                    results=results)
