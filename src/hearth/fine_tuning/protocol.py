"""Wire models for the fine-tuning API: the create request, jobs, events and checkpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# "paused" is what OpenAI answers for a paused job, though the spec's enum predates pausing.
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled", "paused"]

Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
    Field(max_length=16),
]
BatchSize = Literal["auto"] | Annotated[int, Field(ge=1, le=256)]
Multiplier = Literal["auto"] | Annotated[float, Field(gt=0)]
Epochs = Literal["auto"] | Annotated[int, Field(ge=1, le=50)]
Beta = Literal["auto"] | Annotated[float, Field(gt=0, le=2)]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: BatchSize = "auto"
    learning_rate_multiplier: Multiplier = "auto"
    n_epochs: Epochs = "auto"


class DPOHyperparameters(Hyperparameters):
    beta: Beta = "auto"


class SupervisedMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters | None = None


class DPOMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: DPOHyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: SupervisedMethod | None = None
    dpo: DPOMethod | None = None
    reinforcement: dict[str, Any] | None = None


class CreateFineTuningJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    training_file: str
    hyperparameters: Hyperparameters | None = None
    suffix: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    validation_file: str | None = None
    integrations: list[dict[str, Any]] | None = None
    seed: Annotated[int, Field(ge=0, le=2147483647)] | None = None
    method: Method | None = None
    metadata: Metadata | None = None


class JobError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    id: str
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str
    result_files: list[str]
    status: JobStatus
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    integrations: list[dict[str, Any]] | None = None
    seed: int
    estimated_finish: int | None = None
    method: dict[str, Any]
    metadata: dict[str, str] | None = None


class FineTuningJobEvent(BaseModel):
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"]
    data: dict[str, Any]


class FineTuningJobCheckpoint(BaseModel):
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    id: str
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, float]
    step_number: int


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    first_id: str | None
    last_id: str | None
    has_more: bool
