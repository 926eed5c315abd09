"""GET /v1/models and /v1/models/{model}: what this server can answer with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide
from hearth.models.protocol import Model, ModelList
from hearth.models.service import ModelService

router = APIRouter(tags=["models"])
Models = Annotated[ModelService, Depends(provide(ModelService))]


@router.get("/models", response_model=ModelList)
def list_models(_: ProjectCaller, models: Models) -> ModelList:
    return models.list()


@router.get("/models/{model_id:path}", response_model=Model)
def retrieve_model(model_id: str, _: ProjectCaller, models: Models) -> Model:
    return models.retrieve(model_id)


@router.delete("/models/{model_id:path}", response_model=None)
def delete_model(model_id: str, caller: ProjectCaller, models: Models) -> None:
    models.delete(caller, model_id)
