"""/v1/uploads: create, add a part (streamed multipart), complete, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from hearth.api.auth import ProjectCaller
from hearth.api.deps import require_json
from hearth.api.files import Storage
from hearth.api.multipart import StreamingForm
from hearth.protocol.files import CompleteUploadRequest, CreateUploadRequest, Upload, UploadPart
from hearth.services import uploads

router = APIRouter(tags=["uploads"])


@router.post("/uploads", dependencies=[Depends(require_json)])
def create_upload(body: CreateUploadRequest, caller: ProjectCaller, storage: Storage) -> Upload:
    return uploads.create_upload(storage, caller.project_id, body)


@router.post("/uploads/{upload_id}/parts")
async def add_upload_part(upload_id: str, request: Request, caller: ProjectCaller,
                          storage: Storage) -> UploadPart:
    return await uploads.add_part(storage, caller.project_id, upload_id, StreamingForm(request))


@router.post("/uploads/{upload_id}/complete", dependencies=[Depends(require_json)])
async def complete_upload(upload_id: str, body: CompleteUploadRequest, caller: ProjectCaller,
                          storage: Storage) -> Upload:
    return await uploads.complete_upload(storage, caller.project_id, upload_id, body)


@router.post("/uploads/{upload_id}/cancel")
def cancel_upload(upload_id: str, caller: ProjectCaller, storage: Storage) -> Upload:
    return uploads.cancel_upload(storage, caller.project_id, upload_id)
