"""/v1/fine_tuning/jobs: create, list, retrieve and cancel jobs; their events and checkpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from hearth.fine_tuning.protocol import (
    CheckpointList,
    CreateFineTuningJobRequest,
    EventList,
    FineTuningJob,
    JobList,
)
from hearth.fine_tuning.service import FineTuningService
from hearth.http.auth import ProjectCaller
from hearth.http.deps import provide, require_json
from hearth.http.pagination import page_params, unknown_cursor
from hearth.store.pagination import PageRequest, UnknownCursor

router = APIRouter(tags=["fine-tuning"])
FineTuning = Annotated[FineTuningService, Depends(provide(FineTuningService))]
# Jobs, events and checkpoints are listed newest first, 20 (checkpoints: 10) a page.
JobsPage = Annotated[PageRequest, Depends(page_params(default_limit=20, max_limit=100))]
CheckpointsPage = Annotated[PageRequest, Depends(page_params(default_limit=10, max_limit=100))]


@router.post("/fine_tuning/jobs", dependencies=[Depends(require_json)])
def create_job(body: CreateFineTuningJobRequest, caller: ProjectCaller, service: FineTuning) -> FineTuningJob:
    return service.create(caller, body)


@router.get("/fine_tuning/jobs")
def list_jobs(request: Request, caller: ProjectCaller, service: FineTuning, page: JobsPage) -> JobList:
    # metadata[key]=value query parameters filter by the job's metadata.
    metadata = {key[len("metadata["):-1]: value for key, value in request.query_params.items()
                if key.startswith("metadata[") and key.endswith("]")}
    try:
        return service.list_jobs(caller, page, metadata or None)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None


@router.get("/fine_tuning/jobs/{job_id}")
def retrieve_job(job_id: str, caller: ProjectCaller, service: FineTuning) -> FineTuningJob:
    return service.retrieve(caller, job_id)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, caller: ProjectCaller, service: FineTuning) -> FineTuningJob:
    return service.cancel(caller, job_id)


@router.post("/fine_tuning/jobs/{job_id}/pause")
def pause_job(job_id: str, caller: ProjectCaller, service: FineTuning) -> FineTuningJob:
    return service.pause(caller, job_id)


@router.post("/fine_tuning/jobs/{job_id}/resume")
def resume_job(job_id: str, caller: ProjectCaller, service: FineTuning) -> FineTuningJob:
    return service.resume(caller, job_id)


@router.get("/fine_tuning/jobs/{job_id}/events")
def list_events(job_id: str, caller: ProjectCaller, service: FineTuning, page: JobsPage) -> EventList:
    try:
        return service.events(caller, job_id, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(job_id: str, caller: ProjectCaller, service: FineTuning,
                     page: CheckpointsPage) -> CheckpointList:
    try:
        return service.checkpoints(caller, job_id, page)
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None

