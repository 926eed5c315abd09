"""/v1/files: upload (streamed multipart), list, retrieve, delete, download."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse

from hearth.api.auth import ProjectCaller
from hearth.api.multipart import StreamingForm
from hearth.api.pagination import ListResponse, page_params, unknown_cursor
from hearth.protocol.files import DeleteFileResponse, OpenAIFile
from hearth.services import files
from hearth.services.files import FileStorage, file_storage
from hearth.store.pagination import PageRequest, UnknownCursor


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with file_storage(app.state.db, app.state.settings) as storage:
        app.state.file_storage = storage
        yield


router = APIRouter(tags=["files"], lifespan=_lifespan)


def storage_of(request: Request) -> FileStorage:
    return request.app.state.file_storage


Storage = Annotated[FileStorage, Depends(storage_of)]
# The API lists up to 10,000 files a page, and that many by default.
FilesPage = Annotated[PageRequest, Depends(page_params(default_limit=10_000, max_limit=10_000))]


@router.post("/files")
async def create_file(request: Request, caller: ProjectCaller, storage: Storage) -> OpenAIFile:
    return await files.create_file(storage, caller.project_id, StreamingForm(request))


@router.get("/files")
def list_files(caller: ProjectCaller, storage: Storage, page: FilesPage,
               purpose: Annotated[str | None, Query()] = None) -> ListResponse[OpenAIFile]:
    try:
        items, has_more = files.list_files(storage, caller.project_id, purpose, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    return ListResponse[OpenAIFile].of(items, has_more)


@router.get("/files/{file_id}")
def retrieve_file(file_id: str, caller: ProjectCaller, storage: Storage) -> OpenAIFile:
    return files.get_file(storage, caller.project_id, file_id)


@router.delete("/files/{file_id}")
def delete_file(file_id: str, caller: ProjectCaller, storage: Storage) -> DeleteFileResponse:
    return files.delete_file(storage, caller.project_id, file_id)


@router.get("/files/{file_id}/content")
async def download_file(file_id: str, caller: ProjectCaller,
                        storage: Storage) -> StreamingResponse:
    download = await files.open_content(storage, caller.project_id, file_id)
    return StreamingResponse(download.chunks, media_type="application/octet-stream", headers={
        "content-length": str(download.size),
        "content-disposition": f"attachment; filename*=UTF-8''{quote(download.filename)}",
    })
