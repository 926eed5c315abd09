"""GET /v1/models and /v1/models/{model}: what this server can answer with."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide
from hearth.models.protocol import DeletedModel, Model, ModelList
from hearth.models.service import ModelService

router = APIRouter(tags=["models"])
Models = Annotated[ModelService, Depends(provide(ModelService))]


@router.get("/models", response_model=ModelList)
def list_models(caller: ProjectCaller, models: Models) -> ModelList:
    return models.list(caller)


@router.get("/models/{model_id:path}", response_model=Model)
def retrieve_model(model_id: str, caller: ProjectCaller, models: Models) -> Model:
    return models.retrieve(model_id, caller)


@router.delete("/models/{model_id:path}")
async def delete_model(model_id: str, caller: ProjectCaller, models: Models) -> DeletedModel:
    await models.delete(caller, model_id)
    return DeletedModel(id=model_id)
