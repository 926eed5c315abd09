"""/v1/organization/... through the official SDK and raw HTTP against the live server.

Each test makes its own project, so what it counts (keys, members, events)
is its own whatever else the shared server holds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import LiveServer
from tests.http.test_foundation import assert_envelope
from tests.spec import assert_matches_schema

EMBEDDING = "text-embedding-3-small"


@pytest.fixture(scope="module")
def admin(server: LiveServer) -> OpenAI:
    # The SDK sends admin_api_key (OPENAI_ADMIN_KEY) to the /organization endpoints.
    return server.client(admin_api_key=server.admin_key)


@pytest.fixture(scope="module")
def admin_http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.base_url}/v1/organization", timeout=60,
                      headers={"Authorization": f"Bearer {server.admin_key}"}) as raw:
        yield raw


def _project(admin: OpenAI, name: str) -> str:
    return admin.admin.organization.projects.create(name=name).id


def test_projects_through_the_sdk(admin: OpenAI, admin_http: httpx.Client) -> None:
    projects = admin.admin.organization.projects
    created = projects.create(name="Team A")
    assert (created.name, created.status, created.archived_at) == ("Team A", "active", None)
    assert_matches_schema(admin_http.get(f"/projects/{created.id}").json(), "Project")
    assert projects.update(created.id, name="Team A2").name == "Team A2"
    assert projects.retrieve(created.id).name == "Team A2"
    assert created.id in [p.id for p in projects.list(limit=100).data]
    archived = projects.archive(created.id)
    assert archived.status == "archived" and archived.archived_at
    assert created.id not in [p.id for p in projects.list(limit=100)]
    assert created.id in [p.id for p in projects.list(limit=100, include_archived=True)]
    body = admin_http.get("/projects", params={"include_archived": "true", "limit": 2}).json()
    assert_matches_schema(body, "ProjectListResponse")
    assert_envelope(admin_http.post(f"/projects/{created.id}", json={"name": "x"}), 400, param="project_id",
                    code="project_archived")
    assert_envelope(admin_http.get("/projects/proj_missing"), 404, param="project_id")
    assert_envelope(admin_http.post("/projects", json={"name": 5}), 400, param="name")
    assert_envelope(admin_http.post("/projects", content=b"{bad"), 400)
    assert_envelope(admin_http.get("/projects", params={"limit": 0}), 400, param="limit",
                    code="integer_out_of_range")
    assert_envelope(admin_http.get("/projects", params={"after": "proj_nope"}), 400, param="after")


def test_keys_reach_only_their_side(server: LiveServer, admin_http: httpx.Client) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as raw:
        project_key = {"Authorization": f"Bearer {server.api_key}"}
        error = assert_envelope(raw.get("/v1/organization/projects", headers=project_key), 403,
                                code="insufficient_permissions")
        assert "admin key" in error["message"]
        assert_envelope(raw.get("/v1/organization/users"), 401)
        assert_envelope(raw.get("/v1/models", headers={"Authorization": f"Bearer {server.admin_key}"}), 403,
                        code="insufficient_permissions")
    with pytest.raises(openai.PermissionDeniedError):
        server.client(admin_api_key=server.api_key).admin.organization.projects.list()


def test_service_account_key_works_in_its_project_only_and_archiving_stops_it(
        server: LiveServer, admin: OpenAI, admin_http: httpx.Client) -> None:
    project = _project(admin, "Bots")
    accounts = admin.admin.organization.projects.service_accounts
    raw = admin_http.post(f"/projects/{project}/service_accounts", json={"name": "ci"}).json()
    assert_matches_schema(raw, "ProjectServiceAccountCreateResponse")
    created = accounts.create(project, name="deploy")
    assert created.api_key is not None and created.api_key.value.startswith("sk-proj-")
    bot = server.client(api_key=created.api_key.value)
    assert bot.models.list().data
    # Another project's objects do not exist for it.
    theirs = server.client().files.create(file=("notes.txt", b"not for other projects"), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        bot.files.retrieve(theirs.id)
    listed = accounts.list(project)
    assert {a.id for a in listed.data} == {raw["id"], created.id}
    assert accounts.retrieve(created.id, project_id=project).name == "deploy"
    keys = admin.admin.organization.projects.api_keys.list(project)
    owners = {k.owner.service_account.id for k in keys.data if k.owner.service_account}
    assert owners == {raw["id"], created.id} and all("***" in k.redacted_value for k in keys.data)
    body = admin_http.get(f"/projects/{project}/api_keys").json()
    assert_matches_schema(body, "ProjectApiKeyListResponse")
    assert created.api_key.value not in str(body)
    # Deleting one account stops its key; archiving the project stops the other at once.
    deleted = accounts.delete(raw["id"], project_id=project)
    assert deleted.deleted
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key=raw["api_key"]["value"]).models.list()
    assert bot.models.list().data
    admin.admin.organization.projects.archive(project)
    with pytest.raises(openai.AuthenticationError) as refused:
        bot.models.list()
    assert refused.value.code == "invalid_api_key"


def test_project_api_keys_retrieve_and_delete(server: LiveServer, admin: OpenAI, admin_http: httpx.Client) -> None:
    project = _project(admin, "Keys")
    created = admin.admin.organization.projects.service_accounts.create(project, name="svc")
    assert created.api_key is not None
    key_id = created.api_key.id
    api_keys = admin.admin.organization.projects.api_keys
    key = api_keys.retrieve(key_id, project_id=project)
    assert key.owner.type == "service_account" and key.name == "Secret Key"
    assert_matches_schema(admin_http.get(f"/projects/{project}/api_keys/{key_id}").json(), "ProjectApiKey")
    assert api_keys.delete(key_id, project_id=project).deleted
    assert_envelope(admin_http.get(f"/projects/{project}/api_keys/{key_id}"), 404, param="key_id")
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key=created.api_key.value).models.list()


def test_invites_users_and_project_members(server: LiveServer, admin: OpenAI, admin_http: httpx.Client) -> None:
    org = admin.admin.organization
    project = _project(admin, "People")
    email = f"person{time.time_ns()}@example.com"
    created = admin_http.post("/invites", json={"email": email, "role": "reader",
                                                "projects": [{"id": project, "role": "member"}]}).json()
    assert_matches_schema(created, "Invite")
    assert created["status"] == "pending" and created["token"].startswith("hearth-invite-")
    invite = org.invites.retrieve(created["id"])
    assert invite.email == email and invite.status == "pending"
    assert created["id"] in [i.id for i in org.invites.list(limit=100)]
    assert_matches_schema(admin_http.get("/invites").json(), "InviteListResponse")
    # Accepting needs no key, only the token.
    with httpx.Client(base_url=server.base_url, timeout=60) as anonymous:
        assert_envelope(anonymous.post("/v1/organization/invites/accept", json={"token": "hearth-invite-no"}), 404,
                        param="token", code="invite_not_found")
        user = anonymous.post("/v1/organization/invites/accept", json={"token": created["token"], "name": "P"}).json()
    assert_matches_schema(user, "User")
    assert org.invites.retrieve(created["id"]).status == "accepted"
    with pytest.raises(openai.BadRequestError):
        org.invites.delete(created["id"])
    assert org.users.retrieve(user["id"]).role == "reader"
    assert [u.id for u in org.users.list(emails=[email]).data] == [user["id"]]
    assert org.users.update(user["id"], role="owner").role == "owner"
    members = org.projects.users
    assert members.retrieve(user["id"], project_id=project).role == "member"
    assert members.update(user["id"], project_id=project, role="owner").role == "owner"
    assert_matches_schema(admin_http.get(f"/projects/{project}/users").json(), "ProjectUserListResponse")
    assert members.delete(user["id"], project_id=project).deleted
    assert members.create(project, user_id=user["id"], role="member").role == "member"
    with pytest.raises(openai.ConflictError):
        members.create(project, user_id=user["id"], role="member")
    assert_envelope(admin_http.post(f"/projects/{project}/users", json={"user_id": "user-nope", "role": "member"}),
                    404, param="user_id")
    assert_envelope(admin_http.post(f"/users/{user['id']}", json={"role": "admin"}), 400, param="role")
    assert org.users.delete(user["id"]).deleted
    assert_envelope(admin_http.get(f"/users/{user['id']}"), 404, param="user_id")
    pending = org.invites.create(email=f"later{time.time_ns()}@example.com", role="owner")
    assert org.invites.delete(pending.id).deleted
    # One event per change, each on the record with who made it.
    events = org.audit_logs.list(resource_ids=[created["id"], user["id"]], limit=100).data
    assert sorted(e.type for e in events) == sorted([
        "invite.sent", "invite.accepted", "user.added", "user.updated", "user.updated", "user.deleted",
        "user.added", "user.deleted"])
    body = admin_http.get("/audit_logs", params={"resource_ids[]": created["id"]}).json()
    assert_matches_schema(body, "ListAuditLogsResponse")


def test_audit_log_filters_through_the_sdk(admin: OpenAI) -> None:
    org = admin.admin.organization
    started = int(time.time())
    project = _project(admin, "Audited")
    org.projects.update(project, name="Audited 2")
    org.projects.rate_limits.update_rate_limit("rl-all-minilm-l6-v2", project_id=project,
                                               max_requests_per_1_minute=99)
    org.projects.archive(project)
    events = org.audit_logs.list(project_ids=[project], effective_at={"gte": started}, limit=100).data
    assert [e.type for e in events] == ["project.archived", "rate_limit.updated", "project.updated",
                                        "project.created"]
    assert [e.type for e in org.audit_logs.list(project_ids=[project], event_types=["project.updated"]).data] == [
        "project.updated"]
    assert org.audit_logs.list(project_ids=[project], effective_at={"lt": started}).data == []
    page = org.audit_logs.list(project_ids=[project], limit=2)
    assert len(page.data) == 2 and page.has_more
    assert [e.type for e in page.get_next_page().data] == ["project.updated", "project.created"]
    actor = events[0].actor
    assert actor is not None and actor.type == "api_key"


def test_rate_limits_through_the_sdk(admin: OpenAI, admin_http: httpx.Client) -> None:
    project = _project(admin, "Limits")
    limits = admin.admin.organization.projects.rate_limits
    listed = limits.list_rate_limits(project, limit=100)
    assert "rl-all-minilm-l6-v2" in [r.id for r in listed.data]
    assert_matches_schema(admin_http.get(f"/projects/{project}/rate_limits").json(), "ProjectRateLimitListResponse")
    updated = limits.update_rate_limit("rl-all-minilm-l6-v2", project_id=project, max_requests_per_1_minute=7,
                                       max_tokens_per_1_minute=5000)
    assert (updated.max_requests_per_1_minute, updated.max_tokens_per_1_minute) == (7, 5000)
    assert_matches_schema(updated.model_dump(mode="json", exclude_none=True), "ProjectRateLimit")
    assert_envelope(admin_http.post(f"/projects/{project}/rate_limits/rl-nope", json={}), 404, param="rate_limit_id")
    assert_envelope(admin_http.post(f"/projects/{project}/rate_limits/rl-all-minilm-l6-v2",
                                    json={"max_requests_per_1_minute": -1}), 400, param="max_requests_per_1_minute")


def _cli(server: LiveServer, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"HEARTH_DATA_DIR": str(server.data_dir), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "hearth", *args], env=env, capture_output=True, text=True,
                          check=check)


def test_the_cli_accepts_invites_and_makes_keys_through_the_service(server: LiveServer, admin: OpenAI) -> None:
    org = admin.admin.organization
    project = _project(admin, "Desk")
    email = f"cli{time.time_ns()}@example.com"
    with httpx.Client(base_url=f"{server.base_url}/v1/organization", timeout=60,
                      headers={"Authorization": f"Bearer {server.admin_key}"}) as raw:
        token = raw.post("/invites", json={"email": email, "role": "reader",
                                           "projects": [{"id": project, "role": "member"}]}).json()["token"]
    accepted = _cli(server, "invites", "accept", token, "--name", "Cli Person")
    [user] = org.users.list(emails=[email]).data
    assert user.name == "Cli Person" and user.id in accepted.stderr
    assert _cli(server, "invites", "accept", token, check=False).returncode == 2
    # A project key owned by the new member, and an admin key that, being a reader's, only reads.
    created = _cli(server, "keys", "create", "--name", "mine", "--project", project, "--user", user.id)
    key_id = created.stderr.split()[1]
    key = org.projects.api_keys.retrieve(key_id, project_id=project)
    assert key.owner.type == "user" and key.owner.user and key.owner.user.id == user.id
    assert server.client(api_key=created.stdout.strip()).models.list().data
    reader_admin = _cli(server, "keys", "create", "--admin", "--user", user.id).stdout.strip()
    as_reader = server.client(admin_api_key=reader_admin).admin.organization
    assert as_reader.projects.retrieve(project).name == "Desk"
    with pytest.raises(openai.PermissionDeniedError):
        as_reader.projects.update(project, name="Mine now")
    _cli(server, "keys", "revoke", key_id)
    types = [e.type for e in org.audit_logs.list(resource_ids=[key_id]).data]
    assert types == ["api_key.deleted", "api_key.created"]


def test_admin_api_keys_and_service_account_updates_through_the_sdk(server: LiveServer, admin: OpenAI,
                                                                     admin_http: httpx.Client) -> None:
    keys = admin.admin.organization.admin_api_keys
    created = keys.create(name="automation")
    assert created.value and created.value.startswith("sk-admin-")
    assert created.id in [k.id for k in keys.list(limit=100)]
    assert_matches_schema(admin_http.get(f"/admin_api_keys/{created.id}").json(), "AdminApiKey")
    assert_matches_schema(admin_http.get("/admin_api_keys").json(), "ApiKeyList")
    other = server.client(admin_api_key=created.value)
    assert other.admin.organization.projects.list().data
    assert keys.delete(created.id).deleted
    with pytest.raises(openai.AuthenticationError):
        other.admin.organization.projects.list()
    assert_envelope(admin_http.post("/admin_api_keys", json={"name": "x", "expires_in_seconds": 0}), 400,
                    param="expires_in_seconds")
    project = _project(admin, "Renames")
    accounts = admin.admin.organization.projects.service_accounts
    account = accounts.create(project, name="before")
    assert accounts.update(account.id, project_id=project, name="after").name == "after"
