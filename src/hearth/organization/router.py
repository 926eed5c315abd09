"""/v1/organization/...: the Administration, Usage and Costs APIs, for admin keys.

List filters arrive as repeated query parameters, with or without brackets
(the official SDK sends ``project_ids[]=a&project_ids[]=b``), and the audit
log's time range as ``effective_at[gte]=...``; both are read here from the
query string, since FastAPI's declared parameters know neither form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from hearth.errors import InvalidRequest
from hearth.http.auth import AdminCaller
from hearth.http.deps import provide, require_json
from hearth.http.pagination import ListResponse, unknown_cursor
from hearth.organization import protocol as wire
from hearth.organization.service import OrganizationService
from hearth.organization.usage import SHAPES, UsageQuery, UsageService
from hearth.store.organization import AuditFilters
from hearth.store.pagination import Order, PageRequest, UnknownCursor

router = APIRouter(prefix="/organization", tags=["organization"])
Organization = Annotated[OrganizationService, Depends(provide(OrganizationService))]
Usage = Annotated[UsageService, Depends(provide(UsageService))]
JSON = [Depends(require_json)]
T = TypeVar("T", bound=BaseModel)


def _page(order: Order) -> Callable[..., PageRequest]:
    def dependency(limit: Annotated[int, Query()] = 20, after: Annotated[str | None, Query()] = None,
                   before: Annotated[str | None, Query()] = None) -> PageRequest:
        if not 1 <= limit <= 100:
            raise InvalidRequest(f"Invalid 'limit': must be between 1 and 100, got {limit}.", param="limit",
                                 code="integer_out_of_range")
        return PageRequest(limit=limit, order=order, after=after or None, before=before or None)

    return dependency


# Administration listings run oldest first; the audit log newest first.
Page = Annotated[PageRequest, Depends(_page("asc"))]
NewestFirst = Annotated[PageRequest, Depends(_page("desc"))]


def _listing(items_more: Callable[[], tuple[list[T], bool]]) -> ListResponse[T]:
    try:
        items, more = items_more()
    except UnknownCursor as exc:
        raise unknown_cursor(exc) from None
    return ListResponse.of(items, more)


def query_list(request: Request, name: str) -> list[str]:
    """Every value of ``name``, sent as ``name=a&name=b`` or ``name[]=a&name[]=b`` (commas split too)."""
    values = request.query_params.getlist(name) + request.query_params.getlist(f"{name}[]")
    return [part for value in values for part in value.split(",") if part]


def _int(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"Invalid '{name}': expected an integer, got {value!r}.", param=name) from None


def _bool(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidRequest(f"Invalid '{name}': expected true or false, got {value!r}.", param=name)


# -- projects


@router.get("/projects")
def list_projects(caller: AdminCaller, org: Organization, page: Page,
                  include_archived: bool = False) -> ListResponse[wire.Project]:
    return _listing(lambda: org.list_projects(caller, page, include_archived))


@router.post("/projects", dependencies=JSON)
def create_project(body: wire.ProjectCreateRequest, caller: AdminCaller, org: Organization) -> wire.Project:
    return org.create_project(caller, body)


@router.get("/projects/{project_id}")
def retrieve_project(project_id: str, caller: AdminCaller, org: Organization) -> wire.Project:
    return org.retrieve_project(caller, project_id)


@router.post("/projects/{project_id}", dependencies=JSON)
def update_project(project_id: str, body: wire.ProjectUpdateRequest, caller: AdminCaller,
                   org: Organization) -> wire.Project:
    return org.update_project(caller, project_id, body)


@router.post("/projects/{project_id}/archive")
def archive_project(project_id: str, caller: AdminCaller, org: Organization) -> wire.Project:
    return org.archive_project(caller, project_id)


# -- users


@router.get("/users")
def list_users(request: Request, caller: AdminCaller, org: Organization, page: Page) -> ListResponse[wire.User]:
    return _listing(lambda: org.list_users(caller, page, [e.lower() for e in query_list(request, "emails")]))


@router.get("/users/{user_id}")
def retrieve_user(user_id: str, caller: AdminCaller, org: Organization) -> wire.User:
    return org.retrieve_user(caller, user_id)


@router.post("/users/{user_id}", dependencies=JSON)
def update_user(user_id: str, body: wire.UserRoleUpdateRequest, caller: AdminCaller,
                org: Organization) -> wire.User:
    return org.update_user(caller, user_id, body)


@router.delete("/users/{user_id}")
def delete_user(user_id: str, caller: AdminCaller, org: Organization) -> wire.Deleted:
    return org.delete_user(caller, user_id)


# -- invites


@router.get("/invites")
def list_invites(caller: AdminCaller, org: Organization, page: Page) -> ListResponse[wire.Invite]:
    return _listing(lambda: org.list_invites(caller, page))


@router.post("/invites", dependencies=JSON)
def create_invite(body: wire.InviteRequest, caller: AdminCaller, org: Organization) -> wire.Invite:
    return org.create_invite(caller, body)


@router.post("/invites/accept", dependencies=JSON)
def accept_invite(body: wire.AcceptInviteRequest, org: Organization) -> wire.User:
    """Hearth's own route, with no key: the invited person proves who they are with the invite's token."""
    return org.accept_invite(body.token, body.name)


@router.get("/invites/{invite_id}")
def retrieve_invite(invite_id: str, caller: AdminCaller, org: Organization) -> wire.Invite:
    return org.retrieve_invite(caller, invite_id)


@router.delete("/invites/{invite_id}")
def delete_invite(invite_id: str, caller: AdminCaller, org: Organization) -> wire.Deleted:
    return org.delete_invite(caller, invite_id)


# -- project users


@router.get("/projects/{project_id}/users")
def list_project_users(project_id: str, caller: AdminCaller, org: Organization,
                       page: Page) -> ListResponse[wire.ProjectUser]:
    return _listing(lambda: org.list_project_users(caller, project_id, page))


@router.post("/projects/{project_id}/users", dependencies=JSON)
def add_project_user(project_id: str, body: wire.ProjectUserCreateRequest, caller: AdminCaller,
                     org: Organization) -> wire.ProjectUser:
    return org.add_project_user(caller, project_id, body)


@router.get("/projects/{project_id}/users/{user_id}")
def retrieve_project_user(project_id: str, user_id: str, caller: AdminCaller,
                          org: Organization) -> wire.ProjectUser:
    return org.retrieve_project_user(caller, project_id, user_id)


@router.post("/projects/{project_id}/users/{user_id}", dependencies=JSON)
def update_project_user(project_id: str, user_id: str, body: wire.ProjectUserUpdateRequest,
                        caller: AdminCaller, org: Organization) -> wire.ProjectUser:
    return org.update_project_user(caller, project_id, user_id, body)


@router.delete("/projects/{project_id}/users/{user_id}")
def delete_project_user(project_id: str, user_id: str, caller: AdminCaller, org: Organization) -> wire.Deleted:
    return org.delete_project_user(caller, project_id, user_id)


# -- service accounts


@router.get("/projects/{project_id}/service_accounts")
def list_service_accounts(project_id: str, caller: AdminCaller, org: Organization,
                          page: Page) -> ListResponse[wire.ProjectServiceAccount]:
    return _listing(lambda: org.list_service_accounts(caller, project_id, page))


@router.post("/projects/{project_id}/service_accounts", dependencies=JSON)
def create_service_account(project_id: str, body: wire.ProjectServiceAccountCreateRequest, caller: AdminCaller,
                           org: Organization) -> wire.ProjectServiceAccountCreateResponse:
    return org.create_service_account(caller, project_id, body)


@router.get("/projects/{project_id}/service_accounts/{service_account_id}")
def retrieve_service_account(project_id: str, service_account_id: str, caller: AdminCaller,
                             org: Organization) -> wire.ProjectServiceAccount:
    return org.retrieve_service_account(caller, project_id, service_account_id)


@router.post("/projects/{project_id}/service_accounts/{service_account_id}", dependencies=JSON)
def update_service_account(project_id: str, service_account_id: str,
                           body: wire.ProjectServiceAccountUpdateRequest, caller: AdminCaller,
                           org: Organization) -> wire.ProjectServiceAccount:
    return org.update_service_account(caller, project_id, service_account_id, body)


@router.delete("/projects/{project_id}/service_accounts/{service_account_id}")
def delete_service_account(project_id: str, service_account_id: str, caller: AdminCaller,
                           org: Organization) -> wire.Deleted:
    return org.delete_service_account(caller, project_id, service_account_id)


# -- project API keys (created with `hearth keys create`, as OpenAI creates them in its dashboard)


@router.get("/projects/{project_id}/api_keys")
def list_project_keys(project_id: str, caller: AdminCaller, org: Organization,
                      page: Page) -> ListResponse[wire.ProjectApiKey]:
    return _listing(lambda: org.list_project_keys(caller, project_id, page))


@router.get("/projects/{project_id}/api_keys/{key_id}")
def retrieve_project_key(project_id: str, key_id: str, caller: AdminCaller, org: Organization) -> wire.ProjectApiKey:
    return org.retrieve_project_key(caller, project_id, key_id)


@router.delete("/projects/{project_id}/api_keys/{key_id}")
def delete_project_key(project_id: str, key_id: str, caller: AdminCaller, org: Organization) -> wire.Deleted:
    return org.delete_project_key(caller, project_id, key_id)


# -- admin API keys


@router.get("/admin_api_keys")
def list_admin_keys(caller: AdminCaller, org: Organization, page: Page) -> ListResponse[wire.AdminApiKey]:
    return _listing(lambda: org.list_admin_keys(caller, page))


@router.post("/admin_api_keys", dependencies=JSON)
def create_admin_key(body: wire.AdminApiKeyCreateRequest, caller: AdminCaller,
                     org: Organization) -> wire.AdminApiKeyCreated:
    return org.create_admin_key(caller, body)


@router.get("/admin_api_keys/{key_id}")
def retrieve_admin_key(key_id: str, caller: AdminCaller, org: Organization) -> wire.AdminApiKey:
    return org.retrieve_admin_key(caller, key_id)


@router.delete("/admin_api_keys/{key_id}")
def delete_admin_key(key_id: str, caller: AdminCaller, org: Organization) -> wire.Deleted:
    return org.delete_admin_key(caller, key_id)


# -- rate limits


@router.get("/projects/{project_id}/rate_limits")
def list_rate_limits(project_id: str, caller: AdminCaller, org: Organization,
                     page: Annotated[PageRequest, Depends(_page("asc"))]) -> ListResponse[wire.ProjectRateLimit]:
    return _listing(lambda: org.list_rate_limits(caller, project_id, page))


@router.post("/projects/{project_id}/rate_limits/{rate_limit_id}", dependencies=JSON)
def update_rate_limit(project_id: str, rate_limit_id: str, body: wire.ProjectRateLimitUpdateRequest,
                      caller: AdminCaller, org: Organization) -> wire.ProjectRateLimit:
    return org.update_rate_limit(caller, project_id, rate_limit_id, body)


# -- audit logs


@router.get("/audit_logs")
def list_audit_logs(request: Request, caller: AdminCaller, org: Organization,
                    page: NewestFirst) -> ListResponse[wire.AuditLog]:
    filters = AuditFilters(
        gt=_int(request, "effective_at[gt]"), gte=_int(request, "effective_at[gte]"),
        lt=_int(request, "effective_at[lt]"), lte=_int(request, "effective_at[lte]"),
        project_ids=query_list(request, "project_ids"), event_types=query_list(request, "event_types"),
        actor_ids=query_list(request, "actor_ids"), actor_emails=query_list(request, "actor_emails"),
        resource_ids=query_list(request, "resource_ids"))
    return _listing(lambda: org.list_audit_logs(caller, filters, page))


# -- usage and costs


def usage_query(request: Request) -> UsageQuery:
    start_time = _int(request, "start_time")
    if start_time is None:
        raise InvalidRequest("Missing required parameter: 'start_time'.", param="start_time")
    return UsageQuery(
        start_time=start_time, end_time=_int(request, "end_time"),
        bucket_width=request.query_params.get("bucket_width") or "1d",
        project_ids=query_list(request, "project_ids"), user_ids=query_list(request, "user_ids"),
        api_key_ids=query_list(request, "api_key_ids"), models=query_list(request, "models"),
        sizes=query_list(request, "sizes"), sources=query_list(request, "sources"),
        batch=_bool(request, "batch"), group_by=query_list(request, "group_by"),
        limit=_int(request, "limit"), page=request.query_params.get("page") or None)


UsageParams = Annotated[UsageQuery, Depends(usage_query)]


def _usage_route(kind: str) -> Callable[..., Any]:
    def usage(caller: AdminCaller, usage: Usage, query: UsageParams) -> wire.UsagePage:
        return usage.usage(caller, kind, query)

    usage.__name__ = f"usage_{kind}"
    return usage


for _kind in SHAPES:
    router.add_api_route(f"/usage/{_kind}", _usage_route(_kind), methods=["GET"], response_model=wire.UsagePage)


@router.get("/costs")
def costs(caller: AdminCaller, usage: Usage, query: UsageParams) -> wire.UsagePage:
    return usage.costs(caller, query)
