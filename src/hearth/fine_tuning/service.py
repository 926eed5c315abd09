"""Fine-tuning jobs as the API sees them, and the fine-tuned models they leave.

Creating a job checks what can be checked at once (the base model is a local
chat model Hearth can train, the files are the caller's and meant for
fine-tuning, the method is one Hearth runs), then writes the job in
``validating_files`` with its queue job in one transaction. Everything after
that (validating the examples, queueing for the trainer, training in a
process of its own, publishing the model) happens in ``execution.py``.

``FineTunedModels`` is what the model service asks about ``ft:`` names:
which base and adapter a name means for a project, which such models a
project has, and deleting one.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.caller import Caller
from hearth.catalog.catalog import Catalog, UnknownModel
from hearth.errors import InvalidRequest, NotFound, PermissionDenied, model_not_found
from hearth.fine_tuning.protocol import (
    CheckpointList,
    CreateFineTuningJobRequest,
    EventList,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    JobError,
    JobList,
)
from hearth.jobs import JobQueue
from hearth.store import files as files_repo
from hearth.store import fine_tuning as repo
from hearth.store.db import Database
from hearth.store.fine_tuning import ACTIVE, CANCELLED, PAUSED, QUEUED, RUNNING, VALIDATING, FineTuningJobRow
from hearth.store.ids import now
from hearth.store.pagination import PageRequest

RUN = "fine_tuning.run"
# A job interrupted (its worker died) is taken over and resumed from its last checkpoint this many times.
ATTEMPTS = 3
TRAINABLE_ENGINES = ("llama",)


def not_found(job_id: str) -> NotFound:
    return NotFound(f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id")


def job_object(row: FineTuningJobRow) -> FineTuningJob:
    method = dict(row.method)
    hyperparameters = dict((method.get(method["type"]) or {}).get("hyperparameters") or {})
    hyperparameters.pop("beta", None)
    return FineTuningJob(
        id=row.id, created_at=row.created_at,
        error=JobError(**row.error) if row.error else None,
        fine_tuned_model=row.fine_tuned_model, finished_at=row.finished_at,
        hyperparameters=hyperparameters, model=row.model, organization_id=row.organization_id,
        result_files=list(row.result_files or []), status=row.status,  # type: ignore[arg-type]
        trained_tokens=row.trained_tokens, training_file=row.training_file,
        validation_file=row.validation_file, integrations=[], seed=row.seed,
        estimated_finish=row.estimated_finish if row.status in ACTIVE else None,
        method=method, metadata=row.metadata_)


def _requested_method(body: CreateFineTuningJobRequest) -> dict[str, Any]:
    """The method and its hyperparameters as asked ("auto" where not given)."""
    legacy = body.hyperparameters.model_dump() if body.hyperparameters else {}
    if body.method is None:
        return {"type": "supervised", "supervised": {"hyperparameters": _with_autos(legacy)}}
    kind = body.method.type
    if kind == "reinforcement":
        raise InvalidRequest("Reinforcement fine-tuning needs graders, which this server does not run; "
                             "use method type 'supervised' or 'dpo'.", param="method.type",
                             code="unsupported_method")
    section = body.method.dpo if kind == "dpo" else body.method.supervised
    given = section.hyperparameters.model_dump() if section and section.hyperparameters else {}
    if legacy and given:
        raise InvalidRequest("Give the hyperparameters either in 'method' or in the deprecated "
                             "'hyperparameters', not both.", param="hyperparameters")
    return {"type": kind, kind: {"hyperparameters": _with_autos(given or legacy, dpo=kind == "dpo")}}


def _with_autos(values: dict[str, Any], *, dpo: bool = False) -> dict[str, Any]:
    keys = ("batch_size", "learning_rate_multiplier", "n_epochs") + (("beta",) if dpo else ())
    return {key: values.get(key, "auto") for key in keys}


class FineTuningService:
    def __init__(self, db: Database, jobs: JobQueue, catalog: Catalog,
                 is_pulled: Any) -> None:
        self.db = db
        self.jobs = jobs
        self.catalog = catalog
        # is_pulled(spec) -> bool: whether the base model's files are here to train on.
        self.is_pulled = is_pulled

    def create(self, caller: Caller, body: CreateFineTuningJobRequest) -> FineTuningJob:
        if body.integrations:
            raise InvalidRequest("Integrations (Weights and Biases) are not available on this server: "
                                 "it reaches no outside service. Read the job's events and its "
                                 "results file instead.", param="integrations",
                                 code="unsupported_integration")
        base = self._base_model(body.model)
        method = _requested_method(body)
        with self.db.session() as session:
            for param, file_id in (("training_file", body.training_file),
                                   ("validation_file", body.validation_file)):
                if file_id is None:
                    continue
                record = files_repo.get_file(session, caller.project_id, file_id)
                if record is None:
                    raise InvalidRequest(f"File '{file_id}' not found.", param=param,
                                         code="invalid_file")
                if record.purpose != "fine-tune":
                    raise InvalidRequest(f"File '{file_id}' has purpose '{record.purpose}'; files for "
                                         "fine-tuning must be uploaded with purpose 'fine-tune'.",
                                         param=param, code="invalid_file_purpose")
            created = now()
            row = FineTuningJobRow(
                id=f"ftjob-{secrets.token_hex(12)}", organization_id=caller.organization_id,
                project_id=caller.project_id, api_key_id=caller.api_key_id, created_at=created,
                model=body.model, base_model=base, training_file=body.training_file,
                validation_file=body.validation_file, suffix=body.suffix,
                seed=body.seed if body.seed is not None else secrets.randbelow(2**31),
                method=method, metadata_=body.metadata, status=VALIDATING, error=None,
                fine_tuned_model=None, model_deleted=False, result_files=[])
            session.add(row)
            session.flush()
            row.queue_job_id = self.jobs.enqueue_in(session, RUN, {"job_id": row.id},
                                                    project_id=caller.project_id,
                                                    max_attempts=ATTEMPTS)
            repo.add_event(session, row.id, created, f"Created fine-tuning job: {row.id}")
            repo.add_event(session, row.id, created, f"Validating training file: {body.training_file}"
                           + (f" and validation file: {body.validation_file}" if body.validation_file else ""))
        return job_object(row)

    def _base_model(self, name: str) -> str:
        if name.startswith("ft:"):
            raise InvalidRequest("Fine-tuning a fine-tuned model is not supported on this server; "
                                 "start from its base model.", param="model", code="model_not_supported")
        try:
            spec = self.catalog.resolve(name)
        except UnknownModel:
            raise InvalidRequest(f"Model '{name}' is not available for fine-tuning.", param="model",
                                 code="model_not_available") from None
        if spec.kind != "chat" or spec.engine not in TRAINABLE_ENGINES:
            raise InvalidRequest(f"Model '{name}' is a {spec.kind} model; only local chat models can be "
                                 "fine-tuned.", param="model", code="model_not_supported")
        if not self.is_pulled(spec):
            raise InvalidRequest(f"Model '{name}' ({spec.id}) is not pulled on this server; run "
                                 f"`hearth models pull {spec.id}` first.", param="model",
                                 code="model_not_available")
        return spec.id

    def retrieve(self, caller: Caller, job_id: str) -> FineTuningJob:
        with self.db.session() as session:
            return job_object(self._row(session, caller, job_id))

    def list_jobs(self, caller: Caller, page: PageRequest,
                  metadata: dict[str, str] | None) -> JobList:
        with self.db.session() as session:
            rows, has_more = repo.list_jobs(session, caller.project_id, page, metadata)
            return JobList(data=[job_object(row) for row in rows], has_more=has_more)

    def cancel(self, caller: Caller, job_id: str) -> FineTuningJob:
        """Cancel a job that has not finished; its training process is stopped within a second or two."""
        with self.db.session() as session:
            row = self._row(session, caller, job_id)
            at = now()
            if not repo.move(session, job_id, (*ACTIVE, PAUSED), CANCELLED, finished_at=at,
                             estimated_finish=None):
                raise InvalidRequest(f"Cannot cancel a job with status '{row.status}'.",
                                     param="fine_tuning_job_id", code="invalid_job_status")
            repo.add_event(session, job_id, at, "Fine-tuning job cancelled")
            session.flush()
            session.refresh(row)
            return job_object(row)

    def events(self, caller: Caller, job_id: str, page: PageRequest) -> EventList:
        with self.db.session() as session:
            self._row(session, caller, job_id)
            rows, has_more = repo.list_events(session, job_id, page)
            return EventList(data=[FineTuningJobEvent(
                id=row.id, created_at=row.created_at, level=row.level,  # type: ignore[arg-type]
                message=row.message, type=row.type, data=row.data or {})  # type: ignore[arg-type]
                for row in rows], has_more=has_more)

    def checkpoints(self, caller: Caller, job_id: str, page: PageRequest) -> CheckpointList:
        with self.db.session() as session:
            self._row(session, caller, job_id)
            rows, has_more = repo.list_checkpoints(session, job_id, page)
            data = [FineTuningJobCheckpoint(
                id=row.id, created_at=row.created_at, fine_tuned_model_checkpoint=row.fine_tuned_model_checkpoint,
                fine_tuning_job_id=row.job_id, step_number=row.step_number,
                metrics={key: float(value) for key, value in row.metrics.items()
                         if isinstance(value, (int, float))}) for row in rows]
        return CheckpointList(data=data, first_id=data[0].id if data else None,
                              last_id=data[-1].id if data else None, has_more=has_more)

    def pause(self, caller: Caller, job_id: str) -> FineTuningJob:
        """Stop a queued or running job, keeping its checkpoints; its trainer stops within a second
        or two, and :meth:`resume` carries on from the last checkpoint."""
        with self.db.session() as session:
            row = self._row(session, caller, job_id)
            if not repo.move(session, job_id, (QUEUED, RUNNING), PAUSED, estimated_finish=None):
                raise InvalidRequest(f"Cannot pause a job with status '{row.status}'; only queued or "
                                     "running jobs can be paused.", param="fine_tuning_job_id",
                                     code="invalid_job_status")
            repo.add_event(session, job_id, now(), "Fine-tuning job paused")
            session.flush()
            session.refresh(row)
            return job_object(row)

    def resume(self, caller: Caller, job_id: str) -> FineTuningJob:
        """Queue a paused job again; it trains on from its last checkpoint."""
        with self.db.session() as session:
            row = self._row(session, caller, job_id)
            if not repo.move(session, job_id, (PAUSED,), QUEUED):
                raise InvalidRequest(f"Cannot resume a job with status '{row.status}'; only paused "
                                     "jobs can be resumed.", param="fine_tuning_job_id",
                                     code="invalid_job_status")
            row.queue_job_id = self.jobs.enqueue_in(session, RUN, {"job_id": job_id},
                                                    project_id=caller.project_id, max_attempts=ATTEMPTS)
            repo.add_event(session, job_id, now(), "Fine-tuning job resumed")
            session.flush()
            session.refresh(row)
            return job_object(row)

    @staticmethod
    def _row(session: Any, caller: Caller, job_id: str) -> FineTuningJobRow:
        row = repo.get_job(session, job_id, caller.project_id)
        if row is None:
            raise not_found(job_id)
        return row


# -- the fine-tuned models ------------------------------------------------------------------


@dataclass(frozen=True)
class AdaptedModel:
    """What an ``ft:`` name means: a catalog base model with a LoRA adapter on top."""

    name: str
    base_model: str
    adapter: Path
    created: int
    owned_by: str


class FineTunedModels:
    """The model service's view of fine-tuned models (and checkpoints), always per project."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def find(self, name: str, project_id: str) -> AdaptedModel | None:
        with self.db.session() as session:
            job = repo.model_job(session, name, project_id)
            if job is not None and job.adapter_path:
                return AdaptedModel(name, job.base_model, Path(job.adapter_path),
                                    job.finished_at or job.created_at, job.organization_id)
            found = repo.checkpoint_model(session, name, project_id)
            if found is not None:
                checkpoint, job = found
                return AdaptedModel(name, job.base_model, Path(checkpoint.adapter_path),
                                    checkpoint.created_at, job.organization_id)
        return None

    def listed(self, project_id: str) -> Sequence[AdaptedModel]:
        with self.db.session() as session:
            return [AdaptedModel(job.fine_tuned_model or "", job.base_model, Path(job.adapter_path or ""),
                                 job.finished_at or job.created_at, job.organization_id)
                    for job in repo.project_models(session, project_id)]

    def delete(self, name: str, project_id: str) -> None:
        """Delete the fine-tuned model ``name`` (its checkpoints go with it).

        Another project's model is refused (403); a name nobody owns is not found.
        """
        with self.db.session() as session:
            job = repo.model_job(session, name, project_id)
            if job is None:
                owner = repo.model_owner(session, name)
                if owner is not None and owner != project_id:
                    raise PermissionDenied(f"You do not own the model `{name}`; only its owner can delete it.",
                                           code="insufficient_permissions")
                if owner is not None:
                    raise InvalidRequest(f"`{name}` is a checkpoint; delete its fine-tuned model instead.",
                                         param="model", code="model_not_supported")
                raise model_not_found(name)
            repo.set_values(session, job.id, model_deleted=True)


