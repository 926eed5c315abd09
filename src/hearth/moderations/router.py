"""POST /v1/moderations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.moderations.protocol import CreateModerationRequest, CreateModerationResponse
from hearth.moderations.service import ModerationService

router = APIRouter(tags=["moderations"])
Moderations = Annotated[ModerationService, Depends(provide(ModerationService))]


@router.post("/moderations", dependencies=[Depends(require_json)])
async def create_moderations(body: CreateModerationRequest, caller: ProjectCaller,
                             moderations: Moderations) -> CreateModerationResponse:
    return await moderations.create(caller, body)
