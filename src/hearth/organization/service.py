"""The Administration API: projects, users, invites, project members, service accounts, project
API keys, rate limits and the audit log.

Every change checks that the caller may make it (an admin key acts for the
organization; one owned by a ``reader`` may only read), makes it, and adds
its audit event, all in one transaction: the event exists exactly when the
change does. The ``hearth keys`` commands come through here too, acting as
the organization's first owner.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearth.accounting.ratelimits import ModelLimits, ProjectLimits
from hearth.caller import OrganizationCaller
from hearth.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from hearth.organization import protocol as wire
from hearth.settings import Settings
from hearth.store import organization as repo
from hearth.store.db import Database
from hearth.store.ids import new_id, now
from hearth.store.keys import MintedKey, hash_secret, mint_key
from hearth.store.pagination import PageRequest
from hearth.store.tables import (
    ApiKey,
    Invite,
    Organization,
    Project,
    ProjectMember,
    ProjectRateLimitRow,
    ServiceAccount,
    User,
)

INVITE_PREFIX = "hearth-invite-"


@dataclass(frozen=True)
class _Actor:
    """Who made a change, as the audit log records it."""

    body: dict[str, Any] | None
    id: str | None
    email: str | None


def _project(row: Project) -> wire.Project:
    return wire.Project(id=row.id, name=row.name, created_at=row.created_at, archived_at=row.archived_at,
                        status="archived" if row.status == "archived" else "active")


def _user(row: User) -> wire.User:
    return wire.User(id=row.id, name=row.name, email=row.email, role=row.role,  # type: ignore[arg-type]
                     added_at=row.created_at)


def _invite(row: Invite, token: str | None = None) -> wire.Invite:
    if row.accepted_at is not None:
        status = "accepted"
    elif row.expires_at <= now():
        status = "expired"
    else:
        status = "pending"
    return wire.Invite(id=row.id, email=row.email, role=row.role, status=status,  # type: ignore[arg-type]
                       invited_at=row.created_at, created_at=row.created_at, expires_at=row.expires_at,
                       accepted_at=row.accepted_at,
                       projects=[wire.InviteProject.model_validate(item) for item in row.projects], token=token)


def _project_user(member: ProjectMember, user: User) -> wire.ProjectUser:
    return wire.ProjectUser(id=user.id, name=user.name, email=user.email, role=member.role,  # type: ignore[arg-type]
                            added_at=member.created_at)


def _service_account(row: ServiceAccount) -> wire.ProjectServiceAccount:
    return wire.ProjectServiceAccount(id=row.id, name=row.name, role=row.role,  # type: ignore[arg-type]
                                      created_at=row.created_at)


def _rate_limit(model: str, limits: ModelLimits) -> wire.ProjectRateLimit:
    return wire.ProjectRateLimit(
        id=f"rl-{model}", model=model,
        max_requests_per_1_minute=limits.max_requests_per_1_minute or 0,
        max_tokens_per_1_minute=limits.max_tokens_per_1_minute or 0,
        max_images_per_1_minute=limits.max_images_per_1_minute,
        max_audio_megabytes_per_1_minute=limits.max_audio_megabytes_per_1_minute,
        max_requests_per_1_day=limits.max_requests_per_1_day,
        batch_1_day_max_input_tokens=limits.batch_1_day_max_input_tokens)


def audit_object(row: Any) -> wire.AuditLog:
    extra: dict[str, Any] = {row.type: row.payload}
    project = {"id": row.project_id} if row.project_id else None
    return wire.AuditLog(id=row.id, type=row.type, effective_at=row.created_at, actor=row.actor or None,
                         project=project, **extra)


class OrganizationService:
    def __init__(self, db: Database, settings: Settings, limits: ProjectLimits,
                 models: Callable[[], Sequence[str]]) -> None:
        self.db = db
        self.settings = settings
        self.limits = limits
        # The catalog's model ids: the models a project has rate limits for.
        self.models = models

    # -- who is asking

    def _actor(self, session: Session, caller: OrganizationCaller, *, write: bool) -> _Actor:
        """The caller as the audit log names it; a reader's key may not change anything."""
        user = repo.get_user(session, caller.organization_id, caller.user_id) if caller.user_id else None
        if write and user is not None and user.role != "owner":
            raise PermissionDenied("This key belongs to a reader of the organization; only owners can "
                                   "make changes.", code="insufficient_permissions")
        user_body = {"id": user.id, "email": user.email} if user else None
        if caller.api_key_id is not None:
            key: dict[str, Any] = {"id": caller.api_key_id, "type": "user"}
            if user_body:
                key["user"] = user_body
            return _Actor({"type": "api_key", "api_key": key}, caller.api_key_id if user is None else user.id,
                          user.email if user else None)
        if user is not None:  # the CLI, acting as a user on this machine
            return _Actor({"type": "session", "session": {"user": user_body, "ip_address": "127.0.0.1"}},
                          user.id, user.email)
        return _Actor(None, None, None)

    @staticmethod
    def _audit(session: Session, caller: OrganizationCaller, actor: _Actor, type_: str, resource_id: str,
               details: dict[str, Any] | None = None, project_id: str | None = None) -> None:
        repo.add_audit_event(session, organization_id=caller.organization_id, type_=type_, actor=actor.body,
                             actor_id=actor.id, actor_email=actor.email, resource_id=resource_id,
                             payload={"id": resource_id, **(details or {})}, project_id=project_id)

    def _project_row(self, session: Session, caller: OrganizationCaller, project_id: str, *,
                     active: bool = False) -> Project:
        row = repo.get_project(session, caller.organization_id, project_id)
        if row is None:
            raise NotFound(f"No such project: {project_id}", param="project_id")
        if active and row.status == "archived":
            raise InvalidRequest(f"The project {project_id} is archived; archived projects cannot be changed.",
                                 param="project_id", code="project_archived")
        return row

    # -- projects

    def list_projects(self, caller: OrganizationCaller, page: PageRequest,
                      include_archived: bool = False) -> tuple[list[wire.Project], bool]:
        with self.db.session() as session:
            rows, more = repo.list_projects(session, caller.organization_id, page, include_archived)
            return [_project(row) for row in rows], more

    def create_project(self, caller: OrganizationCaller, body: wire.ProjectCreateRequest) -> wire.Project:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = Project(id=new_id("proj_"), organization_id=caller.organization_id, name=body.name,
                          status="active", created_at=now())
            session.add(row)
            session.flush()
            if actor.id and actor.id.startswith("user-"):
                # Whoever creates a project owns it, as in OpenAI's dashboard.
                session.add(ProjectMember(project_id=row.id, user_id=actor.id, role="owner", created_at=now()))
            self._audit(session, caller, actor, "project.created", row.id, {"data": {"name": body.name}},
                        project_id=row.id)
            return _project(row)

    def retrieve_project(self, caller: OrganizationCaller, project_id: str) -> wire.Project:
        with self.db.session() as session:
            return _project(self._project_row(session, caller, project_id))

    def update_project(self, caller: OrganizationCaller, project_id: str,
                       body: wire.ProjectUpdateRequest) -> wire.Project:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._project_row(session, caller, project_id, active=True)
            if body.name is not None:
                row.name = body.name
            self._audit(session, caller, actor, "project.updated", row.id,
                        {"changes_requested": {"title": row.name, "name": row.name}}, project_id=row.id)
            return _project(row)

    def archive_project(self, caller: OrganizationCaller, project_id: str) -> wire.Project:
        """Archive the project: from the next request on, its keys are refused (authentication reads
        the project's status with the key)."""
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._project_row(session, caller, project_id)
            if row.status != "archived":
                row.status = "archived"
                row.archived_at = now()
                self._audit(session, caller, actor, "project.archived", row.id, project_id=row.id)
            return _project(row)

    # -- users

    def _user_row(self, session: Session, caller: OrganizationCaller, user_id: str) -> User:
        row = repo.get_user(session, caller.organization_id, user_id)
        if row is None:
            raise NotFound(f"No such user: {user_id}", param="user_id")
        return row

    def list_users(self, caller: OrganizationCaller, page: PageRequest,
                   emails: Sequence[str] = ()) -> tuple[list[wire.User], bool]:
        with self.db.session() as session:
            rows, more = repo.list_users(session, caller.organization_id, page, emails)
            return [_user(row) for row in rows], more

    def retrieve_user(self, caller: OrganizationCaller, user_id: str) -> wire.User:
        with self.db.session() as session:
            return _user(self._user_row(session, caller, user_id))

    def update_user(self, caller: OrganizationCaller, user_id: str, body: wire.UserRoleUpdateRequest) -> wire.User:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._user_row(session, caller, user_id)
            if row.role == "owner" and body.role != "owner":
                self._keep_an_owner(session, caller)
            row.role = body.role
            self._audit(session, caller, actor, "user.updated", row.id, {"changes_requested": {"role": body.role}})
            return _user(row)

    def delete_user(self, caller: OrganizationCaller, user_id: str) -> wire.Deleted:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._user_row(session, caller, user_id)
            if row.role == "owner":
                self._keep_an_owner(session, caller)
            repo.delete_user(session, row)
            self._audit(session, caller, actor, "user.deleted", user_id)
        return wire.Deleted(object="organization.user.deleted", id=user_id)

    @staticmethod
    def _keep_an_owner(session: Session, caller: OrganizationCaller) -> None:
        if repo.count_owners(session, caller.organization_id) <= 1:
            raise InvalidRequest("The organization must keep at least one owner.", param="role",
                                 code="last_owner")

    # -- invites

    def list_invites(self, caller: OrganizationCaller, page: PageRequest) -> tuple[list[wire.Invite], bool]:
        with self.db.session() as session:
            rows, more = repo.list_invites(session, caller.organization_id, page)
            return [_invite(row) for row in rows], more

    def create_invite(self, caller: OrganizationCaller, body: wire.InviteRequest) -> wire.Invite:
        """Invite someone; the answer carries the token they accept it with, once."""
        email = body.email.strip().lower()
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            if repo.user_by_email(session, caller.organization_id, email) is not None:
                raise Conflict(f"{email} is already a member of the organization.", param="email",
                               code="user_already_member")
            for project in body.projects:
                self._project_row(session, caller, project.id, active=True)
            token = INVITE_PREFIX + secrets.token_urlsafe(24)
            created = now()
            row = Invite(id=new_id("invite-"), organization_id=caller.organization_id, email=email,
                         role=body.role, projects=[project.model_dump() for project in body.projects],
                         token_hash=hash_secret(token), created_at=created,
                         expires_at=created + self.settings.invite_expiry_seconds)
            session.add(row)
            self._audit(session, caller, actor, "invite.sent", row.id, {"data": {"email": email, "role": body.role}})
            return _invite(row, token)

    def retrieve_invite(self, caller: OrganizationCaller, invite_id: str) -> wire.Invite:
        with self.db.session() as session:
            return _invite(self._invite_row(session, caller, invite_id))

    def delete_invite(self, caller: OrganizationCaller, invite_id: str) -> wire.Deleted:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._invite_row(session, caller, invite_id)
            if row.accepted_at is not None:
                raise InvalidRequest(f"The invite {invite_id} has been accepted; it cannot be deleted.",
                                     param="invite_id", code="invite_accepted")
            session.delete(row)
            self._audit(session, caller, actor, "invite.deleted", invite_id)
        return wire.Deleted(object="organization.invite.deleted", id=invite_id)

    @staticmethod
    def _invite_row(session: Session, caller: OrganizationCaller, invite_id: str) -> Invite:
        row = repo.get_invite(session, caller.organization_id, invite_id)
        if row is None:
            raise NotFound(f"No such invite: {invite_id}", param="invite_id")
        return row

    def accept_invite(self, token: str, name: str | None = None) -> wire.User:
        """The invited person accepts: they become a user with the invite's role and projects."""
        with self.db.session() as session:
            row = repo.invite_by_token_hash(session, hash_secret(token))
            if row is None:
                raise NotFound("No invite has this token.", param="token", code="invite_not_found")
            if row.accepted_at is not None:
                raise InvalidRequest("This invite has already been accepted.", param="token", code="invite_accepted")
            if row.expires_at <= now():
                raise InvalidRequest("This invite has expired; ask for a new one.", param="token",
                                     code="invite_expired")
            if repo.user_by_email(session, row.organization_id, row.email) is not None:
                raise Conflict(f"{row.email} is already a member of the organization.", code="user_already_member")
            accepted = now()
            user = User(id=new_id("user-"), organization_id=row.organization_id, email=row.email,
                        name=name or row.email.split("@", 1)[0], role=row.role, created_at=accepted)
            session.add(user)
            session.flush()
            for project in row.projects:
                project_row = session.get(Project, project["id"])
                if project_row is not None and project_row.status == "active":
                    session.add(ProjectMember(project_id=project["id"], user_id=user.id, role=project["role"],
                                              created_at=accepted))
            row.accepted_at = accepted
            caller = OrganizationCaller(row.organization_id, user_id=user.id)
            actor = _Actor({"type": "session", "session": {"user": {"id": user.id, "email": user.email}}},
                           user.id, user.email)
            self._audit(session, caller, actor, "invite.accepted", row.id)
            self._audit(session, caller, actor, "user.added", user.id, {"data": {"role": row.role}})
            return _user(user)

    # -- project users

    def list_project_users(self, caller: OrganizationCaller, project_id: str,
                           page: PageRequest) -> tuple[list[wire.ProjectUser], bool]:
        with self.db.session() as session:
            self._project_row(session, caller, project_id)
            items = [_project_user(member, user) for member, user in repo.members_of(session, project_id)]
        return repo.page_in_memory(items, page)

    def add_project_user(self, caller: OrganizationCaller, project_id: str,
                         body: wire.ProjectUserCreateRequest) -> wire.ProjectUser:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            self._project_row(session, caller, project_id, active=True)
            if body.user_id:
                user = self._user_row(session, caller, body.user_id)
            elif body.email:
                found = repo.user_by_email(session, caller.organization_id, body.email.strip().lower())
                if found is None:
                    raise NotFound(f"No user with the email {body.email} in the organization.", param="email")
                user = found
            else:
                raise InvalidRequest("Missing required parameter: 'user_id'.", param="user_id")
            if repo.get_member(session, project_id, user.id) is not None:
                raise Conflict(f"The user {user.id} is already a member of the project.", param="user_id",
                               code="user_already_member")
            member = ProjectMember(project_id=project_id, user_id=user.id, role=body.role, created_at=now())
            session.add(member)
            self._audit(session, caller, actor, "user.added", user.id, {"data": {"role": body.role}},
                        project_id=project_id)
            return _project_user(member, user)

    def _member(self, session: Session, caller: OrganizationCaller, project_id: str,
                user_id: str) -> tuple[ProjectMember, User]:
        self._project_row(session, caller, project_id)
        found = repo.get_member(session, project_id, user_id)
        if found is None:
            raise NotFound(f"No user {user_id} in the project {project_id}.", param="user_id")
        return found

    def retrieve_project_user(self, caller: OrganizationCaller, project_id: str, user_id: str) -> wire.ProjectUser:
        with self.db.session() as session:
            return _project_user(*self._member(session, caller, project_id, user_id))

    def update_project_user(self, caller: OrganizationCaller, project_id: str, user_id: str,
                            body: wire.ProjectUserUpdateRequest) -> wire.ProjectUser:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            member, user = self._member(session, caller, project_id, user_id)
            member.role = body.role
            self._audit(session, caller, actor, "user.updated", user_id, {"changes_requested": {"role": body.role}},
                        project_id=project_id)
            return _project_user(member, user)

    def delete_project_user(self, caller: OrganizationCaller, project_id: str, user_id: str) -> wire.Deleted:
        """Remove the user from the project; their keys in it stop working."""
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            member, _ = self._member(session, caller, project_id, user_id)
            session.delete(member)
            repo.revoke_project_keys(session, project_id, user_id=user_id)
            self._audit(session, caller, actor, "user.deleted", user_id, project_id=project_id)
        return wire.Deleted(object="organization.project.user.deleted", id=user_id)

    # -- service accounts

    def list_service_accounts(self, caller: OrganizationCaller, project_id: str,
                              page: PageRequest) -> tuple[list[wire.ProjectServiceAccount], bool]:
        with self.db.session() as session:
            self._project_row(session, caller, project_id)
            rows, more = repo.list_service_accounts(session, project_id, page)
            return [_service_account(row) for row in rows], more

    def create_service_account(self, caller: OrganizationCaller, project_id: str,
                               body: wire.ProjectServiceAccountCreateRequest
                               ) -> wire.ProjectServiceAccountCreateResponse:
        """A service account and its key, whose secret is in this answer only."""
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            self._project_row(session, caller, project_id, active=True)
            row = ServiceAccount(id=new_id("svc_acct_"), project_id=project_id, name=body.name, role="member",
                                 created_at=now())
            session.add(row)
            session.flush()
            minted = mint_key(session, kind="project", organization_id=caller.organization_id,
                              project_id=project_id, name="Secret Key", service_account_id=row.id)
            self._audit(session, caller, actor, "service_account.created", row.id, {"data": {"role": row.role}},
                        project_id=project_id)
            key = wire.ProjectServiceAccountApiKey(value=minted.secret, name=minted.record.name,
                                                   created_at=minted.record.created_at, id=minted.record.id)
            return wire.ProjectServiceAccountCreateResponse(id=row.id, name=row.name, role="member",
                                                            created_at=row.created_at, api_key=key)

    def _service_account_row(self, session: Session, caller: OrganizationCaller, project_id: str,
                             account_id: str) -> ServiceAccount:
        self._project_row(session, caller, project_id)
        row = repo.get_service_account(session, project_id, account_id)
        if row is None:
            raise NotFound(f"No such service account: {account_id}", param="service_account_id")
        return row

    def retrieve_service_account(self, caller: OrganizationCaller, project_id: str,
                                 account_id: str) -> wire.ProjectServiceAccount:
        with self.db.session() as session:
            return _service_account(self._service_account_row(session, caller, project_id, account_id))

    def update_service_account(self, caller: OrganizationCaller, project_id: str, account_id: str,
                               body: wire.ProjectServiceAccountUpdateRequest) -> wire.ProjectServiceAccount:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._service_account_row(session, caller, project_id, account_id)
            changes = body.model_dump(exclude_none=True)
            for name, value in changes.items():
                setattr(row, name, value)
            self._audit(session, caller, actor, "service_account.updated", account_id,
                        {"changes_requested": changes}, project_id=project_id)
            return _service_account(row)

    def delete_service_account(self, caller: OrganizationCaller, project_id: str, account_id: str) -> wire.Deleted:
        """Delete the service account; its keys stop working at once."""
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._service_account_row(session, caller, project_id, account_id)
            repo.revoke_project_keys(session, project_id, service_account_id=account_id)
            session.delete(row)
            self._audit(session, caller, actor, "service_account.deleted", account_id, project_id=project_id)
        return wire.Deleted(object="organization.project.service_account.deleted", id=account_id)

    # -- project API keys

    def list_project_keys(self, caller: OrganizationCaller, project_id: str,
                          page: PageRequest) -> tuple[list[wire.ProjectApiKey], bool]:
        with self.db.session() as session:
            self._project_row(session, caller, project_id)
            rows, more = repo.list_project_keys(session, project_id, page)
            return self._keys(session, rows), more

    def retrieve_project_key(self, caller: OrganizationCaller, project_id: str, key_id: str) -> wire.ProjectApiKey:
        with self.db.session() as session:
            return self._keys(session, [self._key_row(session, caller, project_id, key_id)])[0]

    def delete_project_key(self, caller: OrganizationCaller, project_id: str, key_id: str) -> wire.Deleted:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            row = self._key_row(session, caller, project_id, key_id)
            row.revoked_at = now()
            self._audit(session, caller, actor, "api_key.deleted", key_id, project_id=project_id)
        return wire.Deleted(object="organization.project.api_key.deleted", id=key_id)

    def _key_row(self, session: Session, caller: OrganizationCaller, project_id: str, key_id: str) -> ApiKey:
        self._project_row(session, caller, project_id)
        row = repo.get_project_key(session, project_id, key_id)
        if row is None:
            raise NotFound(f"No such API key: {key_id}", param="key_id")
        return row

    @staticmethod
    def _keys(session: Session, rows: Sequence[ApiKey]) -> list[wire.ProjectApiKey]:
        users = repo.users_by_id(session, {row.user_id for row in rows if row.user_id})
        accounts = repo.service_accounts_by_id(session, {row.service_account_id for row in rows
                                                         if row.service_account_id})
        members = {(m.project_id, m.user_id): m.role for m in session.scalars(
            select(ProjectMember).where(ProjectMember.user_id.in_(list(users))))} if users else {}
        out = []
        for row in rows:
            account = accounts.get(row.service_account_id or "")
            user = users.get(row.user_id or "")
            if account is not None:
                owner = wire.KeyOwner(type="service_account", service_account=wire.KeyOwnerServiceAccount(
                    id=account.id, name=account.name, created_at=account.created_at, role=account.role))
            elif user is not None:
                owner = wire.KeyOwner(type="user", user=wire.KeyOwnerUser(
                    id=user.id, email=user.email, name=user.name, created_at=user.created_at,
                    role=members.get((row.project_id or "", user.id), "member")))
            else:
                owner = wire.KeyOwner(type="user")
            out.append(wire.ProjectApiKey(id=row.id, name=row.name, redacted_value=row.redacted_value,
                                          created_at=row.created_at, last_used_at=row.last_used_at, owner=owner))
        return out

    # -- admin API keys (the newer reference's /organization/admin_api_keys)

    def list_admin_keys(self, caller: OrganizationCaller, page: PageRequest) -> tuple[list[wire.AdminApiKey], bool]:
        with self.db.session() as session:
            rows, more = repo.list_admin_keys(session, caller.organization_id, page)
            return self._admin_keys(session, rows), more

    def create_admin_key(self, caller: OrganizationCaller, body: wire.AdminApiKeyCreateRequest) -> wire.AdminApiKeyCreated:
        """A new admin key, owned by the caller's user; its secret is in this answer only."""
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            expires = now() + body.expires_in_seconds if body.expires_in_seconds else None
            minted = mint_key(session, kind="admin", organization_id=caller.organization_id, project_id=None,
                              name=body.name, user_id=caller.user_id, expires_at=expires)
            self._audit(session, caller, actor, "api_key.created", minted.record.id, {"data": {"scopes": []}})
            [key] = self._admin_keys(session, [minted.record])
            return wire.AdminApiKeyCreated(**key.model_dump(), value=minted.secret)

    def retrieve_admin_key(self, caller: OrganizationCaller, key_id: str) -> wire.AdminApiKey:
        with self.db.session() as session:
            return self._admin_keys(session, [self._admin_key_row(session, caller, key_id)])[0]

    def delete_admin_key(self, caller: OrganizationCaller, key_id: str) -> wire.Deleted:
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            self._admin_key_row(session, caller, key_id).revoked_at = now()
            self._audit(session, caller, actor, "api_key.deleted", key_id)
        return wire.Deleted(object="organization.admin_api_key.deleted", id=key_id)

    @staticmethod
    def _admin_key_row(session: Session, caller: OrganizationCaller, key_id: str) -> ApiKey:
        row = repo.get_admin_key(session, caller.organization_id, key_id)
        if row is None:
            raise NotFound(f"No such admin API key: {key_id}", param="key_id")
        return row

    @staticmethod
    def _admin_keys(session: Session, rows: Sequence[ApiKey]) -> list[wire.AdminApiKey]:
        users = repo.users_by_id(session, {row.user_id for row in rows if row.user_id})
        out = []
        for row in rows:
            user = users.get(row.user_id or "")
            owner: wire.AdminApiKeyOwner | dict[str, Any] = wire.AdminApiKeyOwner(
                id=user.id, name=user.name, created_at=user.created_at, role=user.role) if user else {}
            out.append(wire.AdminApiKey(id=row.id, name=row.name, redacted_value=row.redacted_value,
                                        created_at=row.created_at, expires_at=row.expires_at,
                                        last_used_at=row.last_used_at, owner=owner))
        return out

    # -- keys from the command line (OpenAI makes these in its dashboard)

    def cli_caller(self, session: Session) -> OrganizationCaller:
        """The CLI acts as the organization's first owner."""
        org = session.scalar(select(Organization).order_by(Organization.created_at).limit(1))
        if org is None:
            raise NotFound("Hearth has no organization yet.")
        owner = session.scalar(select(User).where(User.organization_id == org.id, User.role == "owner")
                               .order_by(User.created_at, User.id).limit(1))
        return OrganizationCaller(org.id, user_id=owner.id if owner else None)

    def create_key(self, *, name: str, project_id: str | None = None, admin: bool = False,
                   user_id: str | None = None) -> MintedKey:
        """A project key (in ``project_id``, or the first active project) or an organization admin key,
        owned by ``user_id`` or the first owner."""
        with self.db.session() as session:
            caller = self.cli_caller(session)
            actor = self._actor(session, caller, write=False)
            owner = self._user_row(session, caller, user_id) if user_id else None
            owner_id = owner.id if owner else caller.user_id
            target: str | None = None
            if not admin:
                if project_id is None:
                    first = session.scalar(select(Project).where(Project.organization_id == caller.organization_id,
                                                                 Project.status == "active")
                                           .order_by(Project.created_at, Project.id).limit(1))
                    if first is None:
                        raise NotFound("The organization has no active project.")
                    project_id = first.id
                target = self._project_row(session, caller, project_id, active=True).id
                if owner_id and repo.get_member(session, target, owner_id) is None:
                    raise InvalidRequest(f"The user {owner_id} is not a member of the project {target}.",
                                         param="user_id")
            minted = mint_key(session, kind="admin" if admin else "project", organization_id=caller.organization_id,
                              project_id=target, name=name, user_id=owner_id)
            self._audit(session, caller, actor, "api_key.created", minted.record.id, {"data": {"scopes": []}},
                        project_id=target)
            return minted

    def list_keys(self) -> list[ApiKey]:
        with self.db.session() as session:
            return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))

    def revoke_key(self, key_id: str) -> None:
        with self.db.session() as session:
            caller = self.cli_caller(session)
            actor = self._actor(session, caller, write=False)
            row = session.get(ApiKey, key_id)
            if row is None or row.revoked_at is not None:
                raise NotFound(f"No active key {key_id}.", param="key_id")
            row.revoked_at = now()
            self._audit(session, caller, actor, "api_key.deleted", key_id, project_id=row.project_id)

    # -- rate limits

    def list_rate_limits(self, caller: OrganizationCaller, project_id: str,
                         page: PageRequest) -> tuple[list[wire.ProjectRateLimit], bool]:
        with self.db.session() as session:
            self._project_row(session, caller, project_id)
            rows = {row.model: row for row in repo.rate_limit_rows(session, [project_id])}
        defaults = self.limits.defaults
        items = [_rate_limit(model, defaults.merged(rows[model]) if model in rows else defaults)
                 for model in self.models()]
        return repo.page_in_memory(items, page)

    def update_rate_limit(self, caller: OrganizationCaller, project_id: str, rate_limit_id: str,
                          body: wire.ProjectRateLimitUpdateRequest) -> wire.ProjectRateLimit:
        model = rate_limit_id.removeprefix("rl-")
        if not rate_limit_id.startswith("rl-") or model not in self.models():
            raise NotFound(f"No such rate limit: {rate_limit_id}", param="rate_limit_id")
        changes = body.model_dump(exclude_none=True)
        if "batch_1_day_max_input_tokens" in changes:
            raise InvalidRequest("Hearth does not limit batch input tokens per day: batches run in the "
                                 "background lane, after online work, and are not rate limited.",
                                 param="batch_1_day_max_input_tokens", code="unsupported_parameter")
        with self.db.session() as session:
            actor = self._actor(session, caller, write=True)
            self._project_row(session, caller, project_id, active=True)
            row = repo.rate_limit_row(session, project_id, model)
            if row is None:
                row = ProjectRateLimitRow(project_id=project_id, model=model)
                session.add(row)
            for name, value in changes.items():
                setattr(row, name, value)
            self._audit(session, caller, actor, "rate_limit.updated", rate_limit_id,
                        {"changes_requested": changes}, project_id=project_id)
            limits = self.limits.defaults.merged(row)
        self.limits.invalidate(project_id)
        return _rate_limit(model, limits)

    # -- audit logs

    def list_audit_logs(self, caller: OrganizationCaller, filters: repo.AuditFilters,
                        page: PageRequest) -> tuple[list[wire.AuditLog], bool]:
        with self.db.session() as session:
            rows, more = repo.list_audit_events(session, caller.organization_id, filters, page)
            return [audit_object(row) for row in rows], more
