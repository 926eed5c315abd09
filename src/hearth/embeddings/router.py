"""POST /v1/embeddings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from hearth.embeddings.protocol import CreateEmbeddingRequest, CreateEmbeddingResponse
from hearth.embeddings.service import EmbeddingsService
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json

router = APIRouter(tags=["embeddings"])
Embeddings = Annotated[EmbeddingsService, Depends(provide(EmbeddingsService))]


@router.post("/embeddings", dependencies=[Depends(require_json)],
             response_model=CreateEmbeddingResponse)
async def create_embedding(body: CreateEmbeddingRequest, caller: ProjectCaller,
                           embeddings: Embeddings) -> Response:
    response = await embeddings.create(caller, body)
    # Serialized once, in pydantic's Rust core: returning the model would have
    # FastAPI validate up to 2048 x 384 floats again on the way out.
    return Response(response.model_dump_json(), media_type="application/json")
