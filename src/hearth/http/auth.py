"""Bearer-key authentication: who is calling, and for which project.

The result is a ``Caller`` (``hearth.caller``): the one thing about the
request that services see of its identity.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hearth import logs
from hearth.accounting.ratelimits import current_scope
from hearth.caller import Caller, OrganizationCaller
from hearth.errors import AuthenticationError, PermissionDenied
from hearth.http.deps import provide
from hearth.settings import AuthMode, Settings
from hearth.store.db import Database
from hearth.store.keys import Principal, default_principal, principal_for_secret, redact

_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). `hearth keys create` "
    "makes one."
)


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(request: Request, db: Annotated[Database, Depends(provide(Database))],
                 settings: Annotated[Settings, Depends(provide(Settings))]) -> Principal:
    """Resolve the caller from its key (a sync dependency: FastAPI runs it off the loop)."""
    with db.session() as session:
        if settings.auth is AuthMode.disabled:
            principal = default_principal(session)
            if principal is None:
                raise AuthenticationError("Hearth has no project yet.", code="no_project")
            logs.note(project_id=principal.project_id, organization_id=principal.organization_id)
            return principal
        token = _bearer_token(request)
        if token is None:
            raise AuthenticationError(_MISSING_KEY)
        principal = principal_for_secret(session, token)
    if principal is None:
        raise AuthenticationError(
            f"Incorrect API key provided: {redact(token)}. You can list valid keys with "
            "`hearth keys list`.",
            code="invalid_api_key",
        )
    _check_scope_headers(request, principal)
    # The context is the request's own mapping, so what is noted on this thread reaches its log lines.
    logs.note(project_id=principal.project_id, organization_id=principal.organization_id)
    return principal


def _check_scope_headers(request: Request, principal: Principal) -> None:
    organization = request.headers.get("openai-organization")
    if organization and organization != principal.organization_id:
        raise AuthenticationError(
            "OpenAI-Organization header should match organization for API key.",
            code="mismatched_organization",
        )
    project = request.headers.get("openai-project")
    if project and principal.project_id and project != principal.project_id:
        raise AuthenticationError(
            "OpenAI-Project header should match project for API key.", code="mismatched_project"
        )


def project_caller(principal: Annotated[Principal, Depends(authenticate)]) -> Caller:
    """Project keys, not organization admin keys."""
    if principal.project_id is None:
        raise PermissionDenied(
            "Admin keys can only be used for the administration endpoints; "
            "use a project key for this endpoint.",
            code="insufficient_permissions",
        )
    caller = Caller(principal.organization_id, principal.project_id, api_key_id=principal.key_id,
                    user_id=principal.user_id, service_account_id=principal.service_account_id)
    scope = current_scope.get()
    if scope is not None:
        # Rate limits count per project: the model service reads the caller from here.
        scope.caller = caller
    return caller


ProjectCaller = Annotated[Caller, Depends(project_caller)]


def admin_caller(principal: Annotated[Principal, Depends(authenticate)]) -> OrganizationCaller:
    """Organization admin keys, not project keys (the /organization endpoints)."""
    if principal.kind != "admin":
        raise PermissionDenied(
            "You have insufficient permissions for this operation: the /organization endpoints take an "
            "admin key (sk-admin-...), not a project key.",
            code="insufficient_permissions",
        )
    return OrganizationCaller(principal.organization_id, api_key_id=principal.key_id, user_id=principal.user_id)


AdminCaller = Annotated[OrganizationCaller, Depends(admin_caller)]
