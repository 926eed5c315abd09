"""POST /v1/embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from hearth.api.auth import ProjectCaller
from hearth.api.deps import load_model, require_json, resolve_model
from hearth.protocol.embeddings import CreateEmbeddingRequest, CreateEmbeddingResponse
from hearth.services.embeddings import create_embeddings

router = APIRouter(tags=["embeddings"])


@router.post("/embeddings", dependencies=[Depends(require_json)],
             response_model=CreateEmbeddingResponse)
async def create_embedding(body: CreateEmbeddingRequest, request: Request,
                           _: ProjectCaller) -> Response:
    model = await load_model(request, resolve_model(request, body.model, "embedding"))
    response = await create_embeddings(model, body)
    # Serialized once, in pydantic's Rust core: returning the model would have
    # FastAPI validate up to 2048 x 384 floats again on the way out.
    return Response(response.model_dump_json(), media_type="application/json")
