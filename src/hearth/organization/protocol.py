"""Wire models of the Administration, Usage and Costs APIs (``/v1/organization/...``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

OrgRole = Literal["owner", "reader"]
ProjectRole = Literal["owner", "member"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests


class ProjectCreateRequest(_Request):
    name: str = Field(min_length=1, max_length=256)
    # Accepted for the newer API's sake; one machine has one geography and no external keys.
    geography: str | None = None
    external_key_id: str | None = None


class ProjectUpdateRequest(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    geography: str | None = None
    external_key_id: str | None = None


class InviteProject(_Request):
    id: str
    role: ProjectRole


class InviteRequest(_Request):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: OrgRole
    projects: list[InviteProject] = []


class AcceptInviteRequest(_Request):
    token: str
    name: str | None = Field(default=None, max_length=256)


class UserRoleUpdateRequest(_Request):
    role: OrgRole
    # The newer API's optional extras, accepted and not used.
    role_id: str | None = None
    technical_level: str | None = None
    developer_persona: str | None = None


class ProjectUserCreateRequest(_Request):
    user_id: str | None = None
    email: str | None = None
    role: ProjectRole


class ProjectUserUpdateRequest(_Request):
    role: ProjectRole


class ProjectServiceAccountCreateRequest(_Request):
    name: str = Field(min_length=1, max_length=256)


class ProjectServiceAccountUpdateRequest(_Request):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    role: ProjectRole | None = None


class AdminApiKeyCreateRequest(_Request):
    name: str = Field(min_length=1, max_length=256)
    expires_in_seconds: int | None = Field(default=None, ge=1, le=31_536_000)


class ProjectRateLimitUpdateRequest(_Request):
    max_requests_per_1_minute: int | None = Field(default=None, ge=0)
    max_tokens_per_1_minute: int | None = Field(default=None, ge=0)
    max_images_per_1_minute: int | None = Field(default=None, ge=0)
    max_audio_megabytes_per_1_minute: int | None = Field(default=None, ge=0)
    max_requests_per_1_day: int | None = Field(default=None, ge=0)
    batch_1_day_max_input_tokens: int | None = Field(default=None, ge=0)


# Objects


class Project(BaseModel):
    object: Literal["organization.project"] = "organization.project"
    id: str
    name: str
    created_at: int
    archived_at: int | None
    status: Literal["active", "archived"]


class User(BaseModel):
    object: Literal["organization.user"] = "organization.user"
    id: str
    name: str
    email: str
    role: OrgRole
    added_at: int


class Invite(BaseModel):
    object: Literal["organization.invite"] = "organization.invite"
    id: str
    email: str
    role: OrgRole
    status: Literal["accepted", "expired", "pending"]
    # The 2024 reference calls it invited_at, the newer one created_at: both are given.
    invited_at: int
    created_at: int
    expires_at: int
    accepted_at: int | None
    projects: list[InviteProject]
    # Only in the answer to a create: what the invited person accepts the invite with (shown once).
    token: str | None = None

    @model_serializer(mode="wrap")
    def _without_absent_token(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("token") is None:
            data.pop("token", None)
        return data


class ProjectUser(BaseModel):
    object: Literal["organization.project.user"] = "organization.project.user"
    id: str
    name: str
    email: str
    role: ProjectRole
    added_at: int


class ProjectServiceAccount(BaseModel):
    object: Literal["organization.project.service_account"] = "organization.project.service_account"
    id: str
    name: str
    role: ProjectRole
    created_at: int


class ProjectServiceAccountApiKey(BaseModel):
    object: Literal["organization.project.service_account.api_key"] = \
        "organization.project.service_account.api_key"
    value: str
    name: str
    created_at: int
    id: str


class ProjectServiceAccountCreateResponse(ProjectServiceAccount):
    api_key: ProjectServiceAccountApiKey


class KeyOwnerUser(BaseModel):
    id: str
    email: str
    name: str
    created_at: int
    role: str


class KeyOwnerServiceAccount(BaseModel):
    id: str
    name: str
    created_at: int
    role: str


class KeyOwner(BaseModel):
    type: Literal["user", "service_account"]
    user: KeyOwnerUser | None = None
    service_account: KeyOwnerServiceAccount | None = None

    @model_serializer(mode="wrap")
    def _only_the_owner(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


class ProjectApiKey(BaseModel):
    object: Literal["organization.project.api_key"] = "organization.project.api_key"
    id: str
    name: str
    redacted_value: str
    created_at: int
    last_used_at: int | None
    owner: KeyOwner


class AdminApiKeyOwner(BaseModel):
    type: Literal["user"] = "user"
    object: Literal["organization.user"] = "organization.user"
    id: str
    name: str
    created_at: int
    role: str


class AdminApiKey(BaseModel):
    object: Literal["organization.admin_api_key"] = "organization.admin_api_key"
    id: str
    name: str
    redacted_value: str
    created_at: int
    expires_at: int | None
    last_used_at: int | None
    owner: AdminApiKeyOwner | dict[str, Any]


class AdminApiKeyCreated(AdminApiKey):
    # The secret, in this answer only.
    value: str


class ProjectRateLimit(BaseModel):
    object: Literal["project.rate_limit"] = "project.rate_limit"
    id: str
    model: str
    max_requests_per_1_minute: int
    max_tokens_per_1_minute: int
    max_images_per_1_minute: int | None = None
    max_audio_megabytes_per_1_minute: int | None = None
    max_requests_per_1_day: int | None = None
    batch_1_day_max_input_tokens: int | None = None

    @model_serializer(mode="wrap")
    def _only_set_limits(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A limit that is not set (none) is left out, as the API leaves out what does not apply."""
        return {key: value for key, value in handler(self).items() if value is not None}


class Deleted(BaseModel):
    object: str
    id: str
    deleted: bool = True


class AuditLog(BaseModel):
    """An audit event: its type's details sit under a key named after the type (``"project.created"``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: str
    effective_at: int
    actor: dict[str, Any] | None
    project: dict[str, str] | None = None

    @model_serializer(mode="wrap")
    def _without_absent_project(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if data.get("project") is None:
            data.pop("project", None)
        return data


# Usage and costs


class UsageBucket(BaseModel):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[dict[str, Any]]


class UsagePage(BaseModel):
    object: Literal["page"] = "page"
    data: list[UsageBucket]
    has_more: bool
    next_page: str | None
