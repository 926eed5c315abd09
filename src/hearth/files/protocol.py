"""Wire models for Files and Uploads (OpenAIFile, Upload, UploadPart and requests)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# What a client may upload for; the *_output purposes are written by Hearth itself.
FilePurpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
StoredPurpose = FilePurpose | Literal["assistants_output", "batch_output", "fine-tune-results"]


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=2_592_000)


class CreateFileForm(BaseModel):
    """The text fields of POST /v1/files; the file itself streams separately."""

    model_config = ConfigDict(extra="forbid")

    purpose: FilePurpose
    expires_after: ExpiresAfter | None = None


class OpenAIFile(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: StoredPurpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_optionals(self, handler: SerializerFunctionWrapHandler) -> dict:
        # The schema types these as plain integer/string: absent, never null.
        data = handler(self)
        for key in ("expires_at", "status_details"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class DeleteFileResponse(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=1024)
    purpose: FilePurpose
    bytes: int = Field(ge=0)
    mime_type: str = Field(min_length=1, max_length=256)
    expires_after: ExpiresAfter | None = None


class CompleteUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_ids: list[str]
    md5: str | None = None


class Upload(BaseModel):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: Literal["pending", "completed", "cancelled", "expired"]
    file: OpenAIFile | None = None


class UploadPart(BaseModel):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str
