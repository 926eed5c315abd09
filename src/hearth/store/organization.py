"""The organization's people and settings in SQL: users, members, service accounts, invites,
rate limits, and the audit log.

Every function takes the caller's session, so a change and its audit event
(``add_audit_event``) commit together or not at all.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.orm import Session

from hearth.store.ids import now
from hearth.store.pagination import PageRequest, UnknownCursor, keyset_page
from hearth.store.tables import (
    ApiKey,
    AuditLogRow,
    Invite,
    Project,
    ProjectMember,
    ProjectRateLimitRow,
    ServiceAccount,
    User,
)

LIMIT_FIELDS = (
    "max_requests_per_1_minute", "max_tokens_per_1_minute", "max_images_per_1_minute",
    "max_audio_megabytes_per_1_minute", "max_requests_per_1_day", "batch_1_day_max_input_tokens",
)

# Projects


def get_project(session: Session, organization_id: str, project_id: str) -> Project | None:
    return session.scalar(select(Project).where(Project.id == project_id,
                                                Project.organization_id == organization_id))


def list_projects(session: Session, organization_id: str, page: PageRequest,
                  include_archived: bool) -> tuple[list[Project], bool]:
    stmt: Select = select(Project).where(Project.organization_id == organization_id)
    if not include_archived:
        stmt = stmt.where(Project.status == "active")
    return keyset_page(session, stmt, Project, page)


def revoke_project_keys(session: Session, project_id: str, *, user_id: str | None = None,
                        service_account_id: str | None = None) -> None:
    """Revoke the project's keys (only one owner's, when named)."""
    stmt = update(ApiKey).where(ApiKey.project_id == project_id, ApiKey.revoked_at.is_(None))
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    if service_account_id is not None:
        stmt = stmt.where(ApiKey.service_account_id == service_account_id)
    session.execute(stmt.values(revoked_at=now()))


# Users


def get_user(session: Session, organization_id: str, user_id: str) -> User | None:
    return session.scalar(select(User).where(User.id == user_id, User.organization_id == organization_id))


def user_by_email(session: Session, organization_id: str, email: str) -> User | None:
    return session.scalar(select(User).where(User.organization_id == organization_id, User.email == email))


def list_users(session: Session, organization_id: str, page: PageRequest,
               emails: Collection[str] = ()) -> tuple[list[User], bool]:
    stmt: Select = select(User).where(User.organization_id == organization_id)
    if emails:
        stmt = stmt.where(User.email.in_(emails))
    return keyset_page(session, stmt, User, page)


def count_owners(session: Session, organization_id: str) -> int:
    return len(session.scalars(select(User.id).where(User.organization_id == organization_id,
                                                     User.role == "owner")).all())


def delete_user(session: Session, user: User) -> None:
    """Remove the user, their memberships, and revoke every key they own."""
    session.execute(update(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=now()))
    session.execute(delete(ProjectMember).where(ProjectMember.user_id == user.id))
    session.delete(user)


# Project members


def get_member(session: Session, project_id: str, user_id: str) -> tuple[ProjectMember, User] | None:
    row = session.execute(select(ProjectMember, User).join(User, User.id == ProjectMember.user_id)
                          .where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)).first()
    return None if row is None else (row[0], row[1])


def members_of(session: Session, project_id: str) -> list[tuple[ProjectMember, User]]:
    rows = session.execute(select(ProjectMember, User).join(User, User.id == ProjectMember.user_id)
                           .where(ProjectMember.project_id == project_id)
                           .order_by(ProjectMember.created_at, ProjectMember.user_id))
    return [(member, user) for member, user in rows]


# Service accounts


def get_service_account(session: Session, project_id: str, account_id: str) -> ServiceAccount | None:
    return session.scalar(select(ServiceAccount).where(ServiceAccount.id == account_id,
                                                       ServiceAccount.project_id == project_id))


def list_service_accounts(session: Session, project_id: str,
                          page: PageRequest) -> tuple[list[ServiceAccount], bool]:
    stmt: Select = select(ServiceAccount).where(ServiceAccount.project_id == project_id)
    return keyset_page(session, stmt, ServiceAccount, page)


def service_accounts_by_id(session: Session, ids: Collection[str]) -> dict[str, ServiceAccount]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(ServiceAccount).where(ServiceAccount.id.in_(ids)))}


def users_by_id(session: Session, ids: Collection[str]) -> dict[str, User]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(User).where(User.id.in_(ids)))}


# Project API keys


def get_project_key(session: Session, project_id: str, key_id: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.project_id == project_id,
                                               ApiKey.kind == "project", ApiKey.revoked_at.is_(None)))


def list_project_keys(session: Session, project_id: str, page: PageRequest) -> tuple[list[ApiKey], bool]:
    stmt: Select = select(ApiKey).where(ApiKey.project_id == project_id, ApiKey.kind == "project",
                                        ApiKey.revoked_at.is_(None))
    return keyset_page(session, stmt, ApiKey, page)


def get_admin_key(session: Session, organization_id: str, key_id: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.organization_id == organization_id,
                                               ApiKey.kind == "admin", ApiKey.revoked_at.is_(None)))


def list_admin_keys(session: Session, organization_id: str, page: PageRequest) -> tuple[list[ApiKey], bool]:
    stmt: Select = select(ApiKey).where(ApiKey.organization_id == organization_id, ApiKey.kind == "admin",
                                        ApiKey.revoked_at.is_(None))
    return keyset_page(session, stmt, ApiKey, page)


# Invites


def get_invite(session: Session, organization_id: str, invite_id: str) -> Invite | None:
    return session.scalar(select(Invite).where(Invite.id == invite_id, Invite.organization_id == organization_id))


def invite_by_token_hash(session: Session, token_hash: str) -> Invite | None:
    return session.scalar(select(Invite).where(Invite.token_hash == token_hash).with_for_update())


def list_invites(session: Session, organization_id: str, page: PageRequest) -> tuple[list[Invite], bool]:
    stmt: Select = select(Invite).where(Invite.organization_id == organization_id)
    return keyset_page(session, stmt, Invite, page)


# Rate limits


def rate_limit_rows(session: Session, project_ids: Collection[str] | None = None) -> list[ProjectRateLimitRow]:
    stmt = select(ProjectRateLimitRow)
    if project_ids is not None:
        stmt = stmt.where(ProjectRateLimitRow.project_id.in_(project_ids))
    return list(session.scalars(stmt))


def rate_limit_row(session: Session, project_id: str, model: str) -> ProjectRateLimitRow | None:
    return session.get(ProjectRateLimitRow, (project_id, model))


# Audit log


def new_audit_id() -> str:
    """Ids that sort by creation within a second, so the listing keeps the order events happened in."""
    return f"audit_log-{time.time_ns():x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class AuditFilters:
    """The listing's filters; an empty collection restricts nothing. Times are Unix seconds."""

    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None
    project_ids: Collection[str] = ()
    event_types: Collection[str] = ()
    actor_ids: Collection[str] = ()
    actor_emails: Collection[str] = ()
    resource_ids: Collection[str] = ()


def add_audit_event(session: Session, *, organization_id: str, type_: str, actor: dict[str, Any] | None,
                    actor_id: str | None, actor_email: str | None, resource_id: str | None,
                    payload: dict[str, Any], project_id: str | None = None) -> AuditLogRow:
    row = AuditLogRow(id=new_audit_id(), organization_id=organization_id, project_id=project_id, type=type_,
                      created_at=now(), actor=actor or {}, actor_id=actor_id, actor_email=actor_email,
                      resource_id=resource_id, payload=payload)
    session.add(row)
    return row


def list_audit_events(session: Session, organization_id: str, filters: AuditFilters,
                      page: PageRequest) -> tuple[list[AuditLogRow], bool]:
    stmt: Select = select(AuditLogRow).where(AuditLogRow.organization_id == organization_id)
    created = AuditLogRow.created_at
    if filters.gt is not None:
        stmt = stmt.where(created > filters.gt)
    if filters.gte is not None:
        stmt = stmt.where(created >= filters.gte)
    if filters.lt is not None:
        stmt = stmt.where(created < filters.lt)
    if filters.lte is not None:
        stmt = stmt.where(created <= filters.lte)
    for column, values in ((AuditLogRow.project_id, filters.project_ids), (AuditLogRow.type, filters.event_types),
                           (AuditLogRow.actor_id, filters.actor_ids), (AuditLogRow.actor_email, filters.actor_emails),
                           (AuditLogRow.resource_id, filters.resource_ids)):
        if values:
            stmt = stmt.where(column.in_(values))
    return keyset_page(session, stmt, AuditLogRow, page)


def page_in_memory(items: Sequence[Any], page: PageRequest, ident: str = "id") -> tuple[list[Any], bool]:
    """A page of a short list already in listing order (ascending), by the same cursor rules as SQL."""
    ordered = list(items) if page.order == "asc" else list(reversed(items))
    ids = [getattr(item, ident) for item in ordered]
    start, end = 0, len(ordered)
    if page.after is not None:
        if page.after not in ids:
            raise UnknownCursor("after", page.after)
        start = ids.index(page.after) + 1
    if page.before is not None:
        if page.before not in ids:
            raise UnknownCursor("before", page.before)
        end = ids.index(page.before)
    window = ordered[start:end]
    if page.before is not None and page.after is None:
        return window[-page.limit:], len(window) > page.limit
    return window[:page.limit], len(window) > page.limit

