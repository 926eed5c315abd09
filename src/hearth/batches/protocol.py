"""Wire models for the Batch API: the create request and the Batch object."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    model_serializer,
)

from hearth.files.protocol import ExpiresAfter

BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired",
                      "cancelling", "cancelled"]

# Up to 16 pairs; keys up to 64 characters, values up to 512, as the API allows on every object.
Metadata = Annotated[
    dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
    Field(max_length=16),
]


class CreateBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str
    # Any string here: one Hearth does not serve is refused by name, not as a type error.
    endpoint: str
    completion_window: Literal["24h"]
    metadata: Metadata | None = None
    output_expires_after: ExpiresAfter | None = None


class BatchError(BaseModel):
    """What is wrong with the input file, and where (``line`` is 1-based)."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchRequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()
    total_tokens: int


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    model: str | None = None
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    usage: BatchUsage
    metadata: dict[str, str] | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_optionals(self, handler: SerializerFunctionWrapHandler) -> dict:
        # The schema types these as plain string/integer/object: absent, never null.
        # Metadata alone may be null.
        data = handler(self)
        return {key: value for key, value in data.items() if value is not None or key == "metadata"}


# The statuses, by name, for the code that moves a batch between them.
VALIDATING: BatchStatus = "validating"
FAILED: BatchStatus = "failed"
IN_PROGRESS: BatchStatus = "in_progress"
FINALIZING: BatchStatus = "finalizing"
COMPLETED: BatchStatus = "completed"
EXPIRED: BatchStatus = "expired"
CANCELLING: BatchStatus = "cancelling"
CANCELLED: BatchStatus = "cancelled"
# Where a batch ends; nothing moves it on from these.
FINAL_STATUSES: tuple[BatchStatus, ...] = (FAILED, COMPLETED, EXPIRED, CANCELLED)
