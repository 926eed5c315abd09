"""Request-level helpers shared by the routers."""

from __future__ import annotations

from fastapi import Request

from hearth.api.errors import InvalidRequest, UnsupportedMediaType, model_not_found
from hearth.catalog.catalog import ModelSpec, UnknownModel
from hearth.engines.registry import LoadedModel, ModelNotPulled, ModelRegistry


def require_json(request: Request) -> None:
    """JSON endpoints refuse other media types up front (415), as the API does."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"Invalid Content-Type header ({media_type}), expected application/json.",
            code="unsupported_media_type",
        )


def registry_of(request: Request) -> ModelRegistry:
    return request.app.state.registry


def resolve_model(request: Request, name: str, kind: str) -> ModelSpec:
    """The catalog model ``name`` refers to, if it serves ``kind`` and is pulled."""
    registry = registry_of(request)
    try:
        spec = registry.catalog.resolve(name)
    except UnknownModel:
        raise model_not_found(name) from None
    if spec.kind != kind:
        raise InvalidRequest(
            f"The model `{name}` is a {spec.kind} model and cannot be used with this endpoint.",
            param="model",
            code="model_not_supported",
        )
    if not registry.is_servable(spec):
        raise model_not_found(name)
    return spec


async def load_model(request: Request, spec: ModelSpec) -> LoadedModel:
    try:
        return await registry_of(request).get(spec)
    except ModelNotPulled:
        raise model_not_found(spec.id) from None
