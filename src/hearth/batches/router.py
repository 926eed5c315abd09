"""/v1/batches: create, list, retrieve and cancel batches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from hearth.batches.protocol import Batch, CreateBatchRequest
from hearth.batches.service import BatchService
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.pagination import ListResponse, page_params, unknown_cursor
from hearth.store.pagination import PageRequest, UnknownCursor

router = APIRouter(tags=["batches"])
Batches = Annotated[BatchService, Depends(provide(BatchService))]
# The API lists 20 batches a page by default, at most 100.
BatchesPage = Annotated[PageRequest, Depends(page_params(default_limit=20, max_limit=100))]


@router.post("/batches", dependencies=[Depends(require_json)])
def create_batch(body: CreateBatchRequest, caller: ProjectCaller, batches: Batches) -> Batch:
    return batches.create(caller, body)


@router.get("/batches")
def list_batches(caller: ProjectCaller, batches: Batches, page: BatchesPage) -> ListResponse[Batch]:
    try:
        items, has_more = batches.list_batches(caller, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    return ListResponse[Batch].of(items, has_more)


@router.get("/batches/{batch_id}")
def retrieve_batch(batch_id: str, caller: ProjectCaller, batches: Batches) -> Batch:
    return batches.retrieve(caller, batch_id)


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(batch_id: str, caller: ProjectCaller, batches: Batches) -> Batch:
    return batches.cancel(caller, batch_id)
