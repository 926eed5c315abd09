"""API keys: minting, lookup by secret, revocation, and first-run bootstrap."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearth.store.ids import new_id, now
from hearth.store.tables import ApiKey, Organization, Project, ProjectMember, User

KEY_PREFIXES = {"project": "sk-proj-", "admin": "sk-admin-"}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def redact(secret: str) -> str:
    """What a listing or an error may show of a key: its kind and last four characters."""
    if len(secret) <= 12:
        return "*" * len(secret)
    head = next((p for p in KEY_PREFIXES.values() if secret.startswith(p)), secret[:3])
    return f"{head}***{secret[-4:]}"


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the key's organization and, for project keys, its project."""

    key_id: str | None
    kind: str
    organization_id: str
    project_id: str | None
    # The key's owner: a user, or (project keys only) a service account.
    user_id: str | None = None
    service_account_id: str | None = None


@dataclass(frozen=True)
class MintedKey:
    record: ApiKey
    secret: str


def mint_key(session: Session, *, kind: str, organization_id: str, project_id: str | None, name: str,
             user_id: str | None = None, service_account_id: str | None = None,
             expires_at: int | None = None) -> MintedKey:
    secret = KEY_PREFIXES[kind] + secrets.token_urlsafe(36)
    record = ApiKey(
        id=new_id("key_"),
        organization_id=organization_id,
        project_id=project_id,
        kind=kind,
        name=name,
        secret_hash=hash_secret(secret),
        redacted_value=redact(secret),
        created_at=now(),
        user_id=user_id,
        service_account_id=service_account_id,
        expires_at=expires_at,
    )
    session.add(record)
    session.flush()
    return MintedKey(record, secret)


def principal_for_secret(session: Session, secret: str) -> Principal | None:
    """The active key's principal; None for an unknown, revoked or expired key, or one of an archived project.

    The project's status is read in the same query, so archiving a project
    stops its keys on the very next request.
    """
    record = session.execute(
        select(ApiKey.id, ApiKey.kind, ApiKey.organization_id, ApiKey.project_id, ApiKey.user_id,
               ApiKey.service_account_id, ApiKey.expires_at, Project.status)
        .outerjoin(Project, Project.id == ApiKey.project_id)
        .where(ApiKey.secret_hash == hash_secret(secret), ApiKey.revoked_at.is_(None))
    ).first()
    if record is None or record.status == "archived" or (record.expires_at is not None
                                                          and record.expires_at <= now()):
        return None
    return Principal(record.id, record.kind, record.organization_id, record.project_id,
                     record.user_id, record.service_account_id)


def default_project(session: Session) -> Project | None:
    """The first project still active."""
    return session.scalar(select(Project).where(Project.status == "active")
                          .order_by(Project.created_at, Project.id).limit(1))


def default_principal(session: Session) -> Principal | None:
    """The identity used when authentication is disabled: the first project."""
    project = default_project(session)
    if project is None:
        return None
    return Principal(None, "project", project.organization_id, project.id)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def revoke_key(session: Session, key_id: str) -> bool:
    record = session.get(ApiKey, key_id)
    if record is None or record.revoked_at is not None:
        return False
    record.revoked_at = now()
    return True


@dataclass(frozen=True)
class BootstrapResult:
    organization: Organization
    project: Project
    admin_key: MintedKey
    project_key: MintedKey


def bootstrap(session: Session) -> BootstrapResult | None:
    """On an empty database, create the organization, a default project and two keys.

    Returns None when the database already holds an organization, so calling
    it on every start is safe.
    """
    if session.scalar(select(Organization.id).limit(1)) is not None:
        return None
    created = now()
    org = Organization(id=new_id("org-"), name="Hearth", created_at=created)
    project = Project(id=new_id("proj_"), organization_id=org.id, name="Default project",
                      status="active", created_at=created)
    # The organization's first owner: the person who started Hearth, owner of the first keys.
    owner = User(id=new_id("user-"), organization_id=org.id, email="owner@localhost", name="Owner",
                 role="owner", created_at=created)
    session.add_all([org, project])
    session.flush()
    session.add(owner)
    session.flush()
    session.add(ProjectMember(project_id=project.id, user_id=owner.id, role="owner", created_at=created))
    admin = mint_key(session, kind="admin", organization_id=org.id, project_id=None,
                     name="Initial admin key", user_id=owner.id)
    project_key = mint_key(session, kind="project", organization_id=org.id,
                           project_id=project.id, name="Default project key", user_id=owner.id)
    return BootstrapResult(org, project, admin, project_key)
