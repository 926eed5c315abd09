"""GET /v1/models and /v1/models/{model}: what this server can answer with."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from hearth.api.auth import ProjectCaller
from hearth.api.errors import model_not_found
from hearth.catalog.catalog import ModelSpec, UnknownModel

router = APIRouter(tags=["models"])


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def _model(name: str, spec: ModelSpec) -> Model:
    return Model(id=name, created=spec.created, owned_by=spec.owned_by)


@router.get("/models", response_model=ModelList)
def list_models(request: Request, _: ProjectCaller) -> ModelList:
    registry = request.app.state.registry
    servable = {spec.id for spec in registry.catalog.models if registry.is_servable(spec)}
    return ModelList(data=[_model(name, spec) for name, spec in registry.catalog.names()
                           if spec.id in servable])


@router.get("/models/{model_id:path}", response_model=Model)
def retrieve_model(model_id: str, request: Request, _: ProjectCaller) -> Model:
    registry = request.app.state.registry
    try:
        spec = registry.catalog.resolve(model_id)
    except UnknownModel:
        raise model_not_found(model_id) from None
    if not registry.is_servable(spec):
        raise model_not_found(model_id)
    return _model(model_id, spec)
