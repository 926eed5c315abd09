"""/v1/vector_stores: stores, their files, file batches, file content and search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.pagination import page_params, unknown_cursor
from hearth.store.pagination import PageRequest, UnknownCursor
from hearth.vector_stores.protocol import (
    CreateVectorStoreFileBatchRequest,
    CreateVectorStoreFileRequest,
    CreateVectorStoreRequest,
    SearchRequest,
    UpdateVectorStoreFileRequest,
    UpdateVectorStoreRequest,
)
from hearth.vector_stores.service import VectorStoreService

router = APIRouter(tags=["vector_stores"])
Stores = Annotated[VectorStoreService, Depends(provide(VectorStoreService))]
Page = Annotated[PageRequest, Depends(page_params(default_limit=20, max_limit=100))]
JSON = [Depends(require_json)]
Filter = Annotated[str | None, Query(alias="filter")]


def _listed(call: Callable[..., tuple[list[dict[str, Any]], bool]], *args: Any) -> JSONResponse:
    try:
        items, has_more = call(*args)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    return JSONResponse({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                         "last_id": items[-1]["id"] if items else None, "has_more": has_more})


@router.post("/vector_stores", dependencies=JSON)
def create_store(body: CreateVectorStoreRequest, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(stores.create(caller, body))


@router.get("/vector_stores")
def list_stores(caller: ProjectCaller, stores: Stores, page: Page) -> JSONResponse:
    return _listed(stores.list_stores, caller, page)


@router.get("/vector_stores/{vector_store_id}")
def retrieve_store(vector_store_id: str, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(stores.retrieve(caller, vector_store_id))


@router.post("/vector_stores/{vector_store_id}", dependencies=JSON)
def modify_store(vector_store_id: str, body: UpdateVectorStoreRequest, caller: ProjectCaller,
                 stores: Stores) -> JSONResponse:
    return JSONResponse(stores.modify(caller, vector_store_id, body))


@router.delete("/vector_stores/{vector_store_id}")
def delete_store(vector_store_id: str, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(stores.delete(caller, vector_store_id))


@router.post("/vector_stores/{vector_store_id}/search", dependencies=JSON)
async def search(vector_store_id: str, body: SearchRequest, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(await stores.search(caller, vector_store_id, body))


# files


@router.post("/vector_stores/{vector_store_id}/files", dependencies=JSON)
def create_file(vector_store_id: str, body: CreateVectorStoreFileRequest, caller: ProjectCaller,
                stores: Stores) -> JSONResponse:
    return JSONResponse(stores.create_file(caller, vector_store_id, body))


@router.get("/vector_stores/{vector_store_id}/files")
def list_files(vector_store_id: str, caller: ProjectCaller, stores: Stores, page: Page,
               status: Filter = None) -> JSONResponse:
    return _listed(stores.list_files, caller, vector_store_id, page, status)


@router.get("/vector_stores/{vector_store_id}/files/{file_id}")
def retrieve_file(vector_store_id: str, file_id: str, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(stores.retrieve_file(caller, vector_store_id, file_id))


@router.post("/vector_stores/{vector_store_id}/files/{file_id}", dependencies=JSON)
def update_file(vector_store_id: str, file_id: str, body: UpdateVectorStoreFileRequest, caller: ProjectCaller,
                stores: Stores) -> JSONResponse:
    return JSONResponse(stores.update_file(caller, vector_store_id, file_id, body))


@router.delete("/vector_stores/{vector_store_id}/files/{file_id}")
def delete_file(vector_store_id: str, file_id: str, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(stores.delete_file(caller, vector_store_id, file_id))


@router.get("/vector_stores/{vector_store_id}/files/{file_id}/content")
async def retrieve_file_content(vector_store_id: str, file_id: str, caller: ProjectCaller,
                                stores: Stores) -> JSONResponse:
    return JSONResponse(await to_thread.run_sync(stores.file_content, caller, vector_store_id, file_id))


# file batches


@router.post("/vector_stores/{vector_store_id}/file_batches", dependencies=JSON)
def create_batch(vector_store_id: str, body: CreateVectorStoreFileBatchRequest, caller: ProjectCaller,
                 stores: Stores) -> JSONResponse:
    return JSONResponse(stores.create_batch(caller, vector_store_id, body))


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}")
def retrieve_batch(vector_store_id: str, batch_id: str, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(stores.retrieve_batch(caller, vector_store_id, batch_id))


@router.post("/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel")
def cancel_batch(vector_store_id: str, batch_id: str, caller: ProjectCaller, stores: Stores) -> JSONResponse:
    return JSONResponse(stores.cancel_batch(caller, vector_store_id, batch_id))


@router.get("/vector_stores/{vector_store_id}/file_batches/{batch_id}/files")
def list_batch_files(vector_store_id: str, batch_id: str, caller: ProjectCaller, stores: Stores, page: Page,
                     status: Filter = None) -> JSONResponse:
    return _listed(stores.list_files, caller, vector_store_id, page, status, batch_id)
