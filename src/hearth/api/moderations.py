"""POST /v1/moderations."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from hearth.api.auth import ProjectCaller
from hearth.api.deps import load_model, require_json, resolve_model
from hearth.protocol.moderations import CreateModerationRequest, CreateModerationResponse
from hearth.services.moderations import create_moderation

router = APIRouter(tags=["moderations"])


@router.post("/moderations", dependencies=[Depends(require_json)])
async def create_moderations(body: CreateModerationRequest, request: Request,
                             _: ProjectCaller) -> CreateModerationResponse:
    model = await load_model(request, resolve_model(request, body.model, "moderation"))
    return await create_moderation(model, body)
