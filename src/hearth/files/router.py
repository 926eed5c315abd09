"""/v1/files and /v1/uploads: upload (streamed multipart), list, retrieve, delete, download;
and files sent in parts."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from hearth.files import service as files
from hearth.files import uploads
from hearth.files.protocol import (
    CompleteUploadRequest,
    CreateFileForm,
    CreateUploadRequest,
    DeleteFileResponse,
    OpenAIFile,
    Upload,
    UploadPart,
)
from hearth.files.service import FileStorage
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.multipart import StreamingForm
from hearth.http.openapi import multipart_body
from hearth.http.pagination import ListResponse, page_params, unknown_cursor
from hearth.store.pagination import PageRequest, UnknownCursor

router = APIRouter(tags=["files"])
Storage = Annotated[FileStorage, Depends(provide(FileStorage))]
# The API lists up to 10,000 files a page, and that many by default.
FilesPage = Annotated[PageRequest, Depends(page_params(default_limit=10_000, max_limit=10_000))]


@router.post("/files", openapi_extra=multipart_body(CreateFileForm, {"file": "The file to store."}))
async def create_file(request: Request, caller: ProjectCaller, storage: Storage) -> OpenAIFile:
    return await files.create_file(storage, caller, StreamingForm(request))


@router.get("/files")
def list_files(caller: ProjectCaller, storage: Storage, page: FilesPage,
               purpose: Annotated[str | None, Query()] = None) -> ListResponse[OpenAIFile]:
    try:
        items, has_more = files.list_files(storage, caller, purpose, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    return ListResponse[OpenAIFile].of(items, has_more)


@router.get("/files/{file_id}")
def retrieve_file(file_id: str, caller: ProjectCaller, storage: Storage) -> OpenAIFile:
    return files.get_file(storage, caller, file_id)


@router.delete("/files/{file_id}")
def delete_file(file_id: str, caller: ProjectCaller, storage: Storage) -> DeleteFileResponse:
    return files.delete_file(storage, caller, file_id)


@router.get("/files/{file_id}/content")
async def download_file(file_id: str, caller: ProjectCaller,
                        storage: Storage) -> StreamingResponse:
    download = await files.open_content(storage, caller, file_id)
    return StreamingResponse(download.chunks, media_type="application/octet-stream", headers={
        "content-length": str(download.size),
        "content-disposition": f"attachment; filename*=UTF-8''{quote(download.filename)}",
    })


@router.post("/uploads", dependencies=[Depends(require_json)], tags=["uploads"])
def create_upload(body: CreateUploadRequest, caller: ProjectCaller, storage: Storage) -> Upload:
    return uploads.create_upload(storage, caller, body)


@router.post("/uploads/{upload_id}/parts", tags=["uploads"],
             openapi_extra=multipart_body(None, {"data": "The bytes of this part."}))
async def add_upload_part(upload_id: str, request: Request, caller: ProjectCaller,
                          storage: Storage) -> UploadPart:
    return await uploads.add_part(storage, caller, upload_id, StreamingForm(request))


@router.post("/uploads/{upload_id}/complete", dependencies=[Depends(require_json)],
             tags=["uploads"])
async def complete_upload(upload_id: str, body: CompleteUploadRequest, caller: ProjectCaller,
                          storage: Storage) -> Upload:
    return await uploads.complete_upload(storage, caller, upload_id, body)


@router.post("/uploads/{upload_id}/cancel", tags=["uploads"])
def cancel_upload(upload_id: str, caller: ProjectCaller, storage: Storage) -> Upload:
    return uploads.cancel_upload(storage, caller, upload_id)
