"""The Administration API's service in-process, over a real SQLite database.

Roles and scopes, the keys each change stops, one audit event per change
written with it, the audit log's filters, rate-limit storage and its cache,
and the Usage and Costs APIs over the meter's events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hearth.accounting.meter import DatabaseMeter, UsageEvent
from hearth.accounting.ratelimits import ModelLimits, ProjectLimits
from hearth.caller import Caller, OrganizationCaller
from hearth.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from hearth.organization import protocol as wire
from hearth.organization.service import OrganizationService
from hearth.organization.usage import UsageQuery, UsageService
from hearth.settings import Settings
from hearth.store.db import Database
from hearth.store.keys import BootstrapResult, bootstrap, principal_for_secret
from hearth.store.organization import AuditFilters
from hearth.store.pagination import PageRequest
from hearth.store.tables import ApiKey, AuditLogRow
from tests.spec import assert_matches_schema

MODELS = ["model-a", "model-b"]
PAGE = PageRequest(limit=100, order="asc")
NEWEST = PageRequest(limit=100, order="desc")


@dataclass
class Org:
    db: Database
    service: OrganizationService
    usage: UsageService
    limits: ProjectLimits
    first: BootstrapResult
    admin: OrganizationCaller

    def events(self, **filters: object) -> list[wire.AuditLog]:
        return self.service.list_audit_logs(self.admin, AuditFilters(**filters), NEWEST)[0]  # type: ignore[arg-type]

    def count_events(self) -> int:
        with self.db.session() as session:
            return session.scalar(select(func.count()).select_from(AuditLogRow)) or 0

    def invite_user(self, email: str, role: str = "reader", projects: list[dict] | None = None) -> wire.User:
        invite = self.service.create_invite(self.admin, wire.InviteRequest.model_validate(
            {"email": email, "role": role, "projects": projects or []}))
        assert invite.token
        return self.service.accept_invite(invite.token, name=email.split("@")[0])


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    db = Database(f"sqlite:///{tmp_path / 'hearth.db'}")
    db.migrate()
    with db.session() as session:
        first = bootstrap(session)
    assert first is not None
    settings = Settings(data_dir=tmp_path, prices={"model-a": {"input_tokens": 2.0, "output_tokens": 4.0,
                                                                   "training_tokens": 3.0}})
    limits = ProjectLimits(db, ModelLimits(max_requests_per_1_minute=100, max_tokens_per_1_minute=1000),
                           cache_seconds=60)
    admin = OrganizationCaller(first.organization.id, api_key_id=first.admin_key.record.id,
                               user_id=first.admin_key.record.user_id)
    yield Org(db, OrganizationService(db, settings, limits, lambda: MODELS), UsageService(db, settings), limits,
              first, admin)
    db.dispose()


def _principal(org: Org, secret: str):
    with org.db.session() as session:
        return principal_for_secret(session, secret)


def test_the_first_start_makes_an_owner_who_owns_both_keys(org: Org) -> None:
    users, more = org.service.list_users(org.admin, PAGE)
    assert [(u.email, u.role) for u in users] == [("owner@localhost", "owner")] and not more
    keys, _ = org.service.list_project_keys(org.admin, org.first.project.id, PAGE)
    assert len(keys) == 1 and keys[0].owner.type == "user" and keys[0].owner.user is not None
    assert keys[0].owner.user.id == users[0].id and keys[0].owner.user.role == "owner"
    assert "***" in keys[0].redacted_value and org.first.project_key.secret not in keys[0].model_dump_json()
    assert_matches_schema(keys[0].model_dump(mode="json"), "ProjectApiKey")


def test_projects_are_created_renamed_listed_and_archived_each_with_one_event(org: Org) -> None:
    project = org.service.create_project(org.admin, wire.ProjectCreateRequest(name="Research"))
    assert_matches_schema(project.model_dump(mode="json"), "Project")
    renamed = org.service.update_project(org.admin, project.id, wire.ProjectUpdateRequest(name="R&D"))
    assert renamed.name == "R&D" and org.service.retrieve_project(org.admin, project.id).name == "R&D"
    archived = org.service.archive_project(org.admin, project.id)
    assert archived.status == "archived" and archived.archived_at is not None
    listed = [p.id for p in org.service.list_projects(org.admin, PAGE)[0]]
    assert project.id not in listed
    assert project.id in [p.id for p in org.service.list_projects(org.admin, PAGE, include_archived=True)[0]]
    with pytest.raises(InvalidRequest) as refused:
        org.service.update_project(org.admin, project.id, wire.ProjectUpdateRequest(name="again"))
    assert refused.value.code == "project_archived"
    # Archiving twice changes nothing, so it writes nothing.
    org.service.archive_project(org.admin, project.id)
    events = org.events(resource_ids=[project.id])
    assert [e.type for e in events] == ["project.archived", "project.updated", "project.created"]
    for event in events:
        assert_matches_schema(event.model_dump(mode="json"), "AuditLog")
    assert events[-1].model_dump()["project.created"] == {"id": project.id, "data": {"name": "Research"}}
    assert events[0].actor == {"type": "api_key", "api_key": {
        "id": org.admin.api_key_id, "type": "user", "user": {"id": org.admin.user_id, "email": "owner@localhost"}}}


def test_archiving_a_project_stops_its_keys_at_once(org: Org) -> None:
    secret = org.first.project_key.secret
    assert _principal(org, secret) is not None
    org.service.archive_project(org.admin, org.first.project.id)
    assert _principal(org, secret) is None
    assert _principal(org, org.first.admin_key.secret) is not None


def test_unknown_and_foreign_ids_are_not_found(org: Org) -> None:
    other = OrganizationCaller("org-other")
    for call in (lambda: org.service.retrieve_project(org.admin, "proj_nope"),
                 lambda: org.service.retrieve_project(other, org.first.project.id),
                 lambda: org.service.retrieve_user(org.admin, "user-nope"),
                 lambda: org.service.retrieve_invite(org.admin, "invite-nope"),
                 lambda: org.service.retrieve_service_account(org.admin, org.first.project.id, "svc_acct_nope"),
                 lambda: org.service.retrieve_project_key(org.admin, org.first.project.id, "key_nope"),
                 lambda: org.service.retrieve_project_user(org.admin, org.first.project.id, "user-nope"),
                 lambda: org.service.update_rate_limit(org.admin, org.first.project.id, "rl-unknown",
                                                       wire.ProjectRateLimitUpdateRequest())):
        with pytest.raises(NotFound):
            call()


def test_an_accepted_invite_makes_a_user_with_its_role_and_projects(org: Org) -> None:
    invite = org.service.create_invite(org.admin, wire.InviteRequest.model_validate(
        {"email": "Ada@Example.com", "role": "reader", "projects": [{"id": org.first.project.id, "role": "member"}]}))
    body = invite.model_dump(mode="json")
    assert body["status"] == "pending" and body["email"] == "ada@example.com" and body["token"]
    assert_matches_schema(body, "Invite")
    assert "token" not in org.service.retrieve_invite(org.admin, invite.id).model_dump(mode="json")
    with pytest.raises(NotFound):
        org.service.accept_invite("hearth-invite-wrong")
    assert invite.token
    user = org.service.accept_invite(invite.token, name="Ada")
    assert (user.email, user.role, user.name) == ("ada@example.com", "reader", "Ada")
    assert_matches_schema(user.model_dump(mode="json"), "User")
    assert org.service.retrieve_invite(org.admin, invite.id).status == "accepted"
    assert org.service.retrieve_project_user(org.admin, org.first.project.id, user.id).role == "member"
    with pytest.raises(InvalidRequest):
        org.service.accept_invite(invite.token)
    with pytest.raises(InvalidRequest):
        org.service.delete_invite(org.admin, invite.id)
    with pytest.raises(Conflict):
        org.service.create_invite(org.admin, wire.InviteRequest(email="ada@example.com", role="owner"))
    pending = org.service.create_invite(org.admin, wire.InviteRequest(email="bob@example.com", role="owner"))
    assert org.service.delete_invite(org.admin, pending.id).deleted
    assert [i.id for i in org.service.list_invites(org.admin, PAGE)[0]] == [invite.id]
    assert [e.type for e in org.events()] == ["invite.deleted", "invite.sent", "user.added", "invite.accepted",
                                              "invite.sent"]


def test_a_readers_admin_key_reads_but_changes_nothing(org: Org) -> None:
    reader = org.invite_user("reader@example.com", "reader")
    minted = org.service.create_key(name="reader admin", admin=True, user_id=reader.id)
    as_reader = OrganizationCaller(org.admin.organization_id, api_key_id=minted.record.id, user_id=reader.id)
    assert org.service.list_projects(as_reader, PAGE)[0]
    before = org.count_events()
    for change in (lambda: org.service.create_project(as_reader, wire.ProjectCreateRequest(name="x")),
                   lambda: org.service.archive_project(as_reader, org.first.project.id),
                   lambda: org.service.update_user(as_reader, reader.id, wire.UserRoleUpdateRequest(role="owner")),
                   lambda: org.service.create_invite(as_reader, wire.InviteRequest(email="c@d.e", role="owner")),
                   lambda: org.service.update_rate_limit(as_reader, org.first.project.id, "rl-model-a",
                                                         wire.ProjectRateLimitUpdateRequest(max_requests_per_1_minute=1))):
        with pytest.raises(PermissionDenied):
            change()
    assert org.count_events() == before
    # Promoted, the same key may make changes.
    org.service.update_user(org.admin, reader.id, wire.UserRoleUpdateRequest(role="owner"))
    assert org.service.create_project(as_reader, wire.ProjectCreateRequest(name="mine")).name == "mine"


def test_the_last_owner_cannot_be_demoted_or_deleted(org: Org) -> None:
    assert org.admin.user_id
    with pytest.raises(InvalidRequest) as refused:
        org.service.update_user(org.admin, org.admin.user_id, wire.UserRoleUpdateRequest(role="reader"))
    assert refused.value.code == "last_owner"
    with pytest.raises(InvalidRequest):
        org.service.delete_user(org.admin, org.admin.user_id)


def test_removing_a_user_stops_their_keys(org: Org) -> None:
    member = org.invite_user("m@example.com", "reader", [{"id": org.first.project.id, "role": "member"}])
    key = org.service.create_key(name="m's key", project_id=org.first.project.id, user_id=member.id)
    principal = _principal(org, key.secret)
    assert principal is not None and principal.user_id == member.id
    org.service.update_project_user(org.admin, org.first.project.id, member.id,
                                    wire.ProjectUserUpdateRequest(role="owner"))
    assert org.service.delete_project_user(org.admin, org.first.project.id, member.id).deleted
    assert _principal(org, key.secret) is None
    with pytest.raises(InvalidRequest):  # no longer a member: no key for that project
        org.service.create_key(name="again", project_id=org.first.project.id, user_id=member.id)
    org.service.add_project_user(org.admin, org.first.project.id,
                                 wire.ProjectUserCreateRequest(user_id=member.id, role="member"))
    with pytest.raises(Conflict):
        org.service.add_project_user(org.admin, org.first.project.id,
                                     wire.ProjectUserCreateRequest(email="m@example.com", role="member"))
    again = org.service.create_key(name="again", project_id=org.first.project.id, user_id=member.id)
    assert org.service.delete_user(org.admin, member.id).deleted
    assert _principal(org, again.secret) is None
    with pytest.raises(NotFound):
        org.service.retrieve_project_user(org.admin, org.first.project.id, member.id)


def test_a_service_account_key_acts_in_its_project_only_until_deleted(org: Org) -> None:
    project = org.service.create_project(org.admin, wire.ProjectCreateRequest(name="Bots"))
    account = org.service.create_service_account(org.admin, project.id,
                                                 wire.ProjectServiceAccountCreateRequest(name="ci"))
    assert_matches_schema(account.model_dump(mode="json"), "ProjectServiceAccountCreateResponse")
    principal = _principal(org, account.api_key.value)
    assert principal is not None and principal.kind == "project"
    assert (principal.project_id, principal.service_account_id) == (project.id, account.id)
    keys, _ = org.service.list_project_keys(org.admin, project.id, PAGE)
    assert [k.owner.type for k in keys] == ["service_account"]
    assert keys[0].owner.service_account and keys[0].owner.service_account.id == account.id
    assert [a.id for a in org.service.list_service_accounts(org.admin, project.id, PAGE)[0]] == [account.id]
    with pytest.raises(NotFound):
        org.service.retrieve_service_account(org.admin, org.first.project.id, account.id)
    org.service.delete_service_account(org.admin, project.id, account.id)
    assert _principal(org, account.api_key.value) is None
    assert [e.type for e in org.events(project_ids=[project.id])] == [
        "service_account.deleted", "service_account.created", "project.created"]


def test_deleting_a_project_key_stops_it_and_is_audited(org: Org) -> None:
    key_id = org.first.project_key.record.id
    assert org.service.delete_project_key(org.admin, org.first.project.id, key_id).deleted
    assert _principal(org, org.first.project_key.secret) is None
    with pytest.raises(NotFound):
        org.service.retrieve_project_key(org.admin, org.first.project.id, key_id)
    assert [e.type for e in org.events(resource_ids=[key_id])] == ["api_key.deleted"]


def test_keys_made_and_revoked_on_the_command_line_are_audited(org: Org) -> None:
    minted = org.service.create_key(name="laptop")
    assert minted.record.project_id == org.first.project.id and minted.record.user_id == org.admin.user_id
    org.service.revoke_key(minted.record.id)
    assert _principal(org, minted.secret) is None
    with pytest.raises(NotFound):
        org.service.revoke_key(minted.record.id)
    events = org.events(resource_ids=[minted.record.id])
    assert [e.type for e in events] == ["api_key.deleted", "api_key.created"]
    assert events[0].actor and events[0].actor["type"] == "session"


def test_rate_limits_list_every_model_and_changes_apply_at_once_in_this_process(org: Org) -> None:
    project = org.first.project.id
    limits, more = org.service.list_rate_limits(org.admin, project, PAGE)
    assert [(r.id, r.max_requests_per_1_minute, r.max_tokens_per_1_minute) for r in limits] == [
        ("rl-model-a", 100, 1000), ("rl-model-b", 100, 1000)] and not more
    assert_matches_schema(limits[0].model_dump(mode="json"), "ProjectRateLimit")
    assert org.limits.for_model(project, "model-a").max_requests_per_1_minute == 100  # cached now
    updated = org.service.update_rate_limit(org.admin, project, "rl-model-a", wire.ProjectRateLimitUpdateRequest(
        max_requests_per_1_minute=5, max_requests_per_1_day=50))
    assert (updated.max_requests_per_1_minute, updated.max_tokens_per_1_minute, updated.max_requests_per_1_day) == (
        5, 1000, 50)
    assert org.limits.for_model(project, "model-a") == ModelLimits(5, 1000, None, None, 50, None)
    assert org.limits.for_model(project, "model-b").max_requests_per_1_minute == 100
    page, more = org.service.list_rate_limits(org.admin, project, PageRequest(limit=1, order="asc"))
    assert [r.id for r in page] == ["rl-model-a"] and more
    page, more = org.service.list_rate_limits(org.admin, project, PageRequest(limit=1, order="asc",
                                                                              after="rl-model-a"))
    assert [r.id for r in page] == ["rl-model-b"] and not more
    with pytest.raises(InvalidRequest) as refused:
        org.service.update_rate_limit(org.admin, project, "rl-model-a", wire.ProjectRateLimitUpdateRequest(
            batch_1_day_max_input_tokens=1000))
    assert refused.value.param == "batch_1_day_max_input_tokens"
    [event] = org.events(event_types=["rate_limit.updated"])
    assert event.model_dump()["rate_limit.updated"]["changes_requested"] == {
        "max_requests_per_1_minute": 5, "max_requests_per_1_day": 50}


def test_the_audit_log_filters_by_time_actor_type_project_and_pages(org: Org) -> None:
    for name in ("a", "b", "c"):
        org.service.create_project(org.admin, wire.ProjectCreateRequest(name=name))
    reader = org.invite_user("r@example.com")
    every = org.events()
    assert len(every) == 6
    assert org.events(actor_emails=["r@example.com"])[0].type == "user.added"
    assert {e.type for e in org.events(actor_ids=[reader.id])} == {"user.added", "invite.accepted"}
    assert len(org.events(actor_ids=[org.admin.user_id or ""])) == 4
    assert org.events(gt=every[0].effective_at) == []
    assert len(org.events(gte=every[-1].effective_at, lte=every[0].effective_at)) == 6
    assert org.events(lt=every[-1].effective_at) == []
    first, more = org.service.list_audit_logs(org.admin, AuditFilters(), PageRequest(limit=4, order="desc"))
    rest, done = org.service.list_audit_logs(org.admin, AuditFilters(),
                                             PageRequest(limit=4, order="desc", after=first[-1].id))
    assert more and not done and [e.id for e in first + rest] == [e.id for e in every]


def _event(project: str, kind: str, model: str, **units: object) -> UsageEvent:
    return UsageEvent(Caller("ORG", project, api_key_id=f"key_{project}"), kind=kind, endpoint="/v1/x",  # type: ignore[arg-type]
                      model=model, created_at=1_700_000_000 + int(units.pop("at", 0)), **units)  # type: ignore[arg-type]


def test_usage_endpoints_shape_each_kind_and_costs_price_it(org: Org) -> None:
    org.admin = OrganizationCaller("ORG")
    meter = DatabaseMeter(org.db)
    for event in (_event("p1", "completions", "model-a", input_tokens=1000, output_tokens=500),
                  _event("p2", "completions", "model-a", input_tokens=10, output_tokens=5, batch=True),
                  _event("p1", "embeddings", "model-b", input_tokens=7),
                  _event("p1", "moderations", "model-b", input_tokens=3),
                  _event("p1", "images", "model-b", images=2, size="256x256", source="image.generation"),
                  _event("p1", "audio_speeches", "model-b", characters=42),
                  _event("p1", "audio_transcriptions", "model-b", seconds=12.6),
                  _event("p1", "vector_stores", "model-b", requests=0, bytes=4096),
                  _event("p1", "code_interpreter_sessions", "model-b", sessions=1),
                  _event("p1", "fine_tuning", "model-a", input_tokens=5000),
                  _event("p1", "completions", "model-a", input_tokens=1, output_tokens=1, at=86_400)):
        meter.record(event)
    assert meter.flush()
    day = UsageQuery(start_time=1_700_000_000, end_time=1_700_000_000 + 2 * 86_400)
    schemas = {"completions": "UsageCompletionsResult", "embeddings": "UsageEmbeddingsResult",
               "moderations": "UsageModerationsResult", "images": "UsageImagesResult",
               "audio_speeches": "UsageAudioSpeechesResult", "audio_transcriptions": "UsageAudioTranscriptionsResult",
               "vector_stores": "UsageVectorStoresResult",
               "code_interpreter_sessions": "UsageCodeInterpreterSessionsResult"}
    for kind, schema in schemas.items():
        page = org.usage.usage(org.admin, kind, day)
        body = page.model_dump(mode="json")
        assert_matches_schema(body, "UsageResponse")
        for result in body["data"][0]["results"]:
            assert_matches_schema(result, schema)
    completions = org.usage.usage(org.admin, "completions", UsageQuery(**{**day.__dict__, "group_by": ["project_id", "batch"]}))
    first_day = {(r["project_id"], r["batch"]): (r["input_tokens"], r["output_tokens"], r["num_model_requests"])
                 for r in completions.data[0].results}
    assert first_day == {("p1", False): (1000, 500, 1), ("p2", True): (10, 5, 1)}
    assert [r["input_tokens"] for r in completions.data[1].results] == [1]
    speech = org.usage.usage(org.admin, "audio_transcriptions", day).data[0].results
    assert speech[0]["seconds"] == 13
    sessions = org.usage.usage(org.admin, "code_interpreter_sessions", day).data[0].results[0]
    assert sessions["num_sessions"] == sessions["sessions"] == 1
    assert org.usage.usage(org.admin, "vector_stores", day).data[0].results[0]["usage_bytes"] == 4096
    with pytest.raises(InvalidRequest) as refused:
        org.usage.usage(org.admin, "vector_stores", UsageQuery(start_time=1, group_by=["model"]))
    assert refused.value.param == "group_by"
    with pytest.raises(InvalidRequest) as refused:
        org.usage.usage(org.admin, "completions", UsageQuery(start_time=1, bucket_width="1w"))
    assert refused.value.param == "bucket_width"

    costs = org.usage.costs(org.admin, day)
    assert_matches_schema(costs.model_dump(mode="json"), "UsageResponse")
    # model-a: 1010 input tokens at $2/M, 505 output tokens at $4/M and 5000 trained on at $3/M;
    # everything else is free.
    assert costs.data[0].results[0]["amount"] == {"value": pytest.approx((1010 * 2 + 505 * 4 + 5000 * 3) / 1e6),
                                                  "currency": "usd"}
    by_item = org.usage.costs(org.admin, UsageQuery(**{**day.__dict__, "group_by": ["project_id", "line_item"]}))
    items = {(r["project_id"], r["line_item"]): r["amount"]["value"] for r in by_item.data[0].results}
    assert items[("p1", "model-a, input tokens")] == pytest.approx(1000 * 2 / 1e6)
    assert items[("p2", "model-a, output tokens")] == pytest.approx(5 * 4 / 1e6)
    assert items[("p1", "model-b, characters")] == 0
    assert items[("p1", "model-a, training tokens")] == pytest.approx(5000 * 3 / 1e6)
    with pytest.raises(InvalidRequest):
        org.usage.costs(org.admin, UsageQuery(start_time=1, bucket_width="1h"))
    meter.close()


def test_an_older_database_gets_an_owner_for_its_keys(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from hearth.store.db import MIGRATIONS_DIR

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        connection.execute(text("INSERT INTO organizations VALUES ('org-1', 'Old', 1)"))
        connection.execute(text("INSERT INTO projects (id, organization_id, name, status, created_at) "
                                "VALUES ('proj_1', 'org-1', 'P', 'active', 1)"))
        connection.execute(text("INSERT INTO api_keys (id, organization_id, project_id, kind, name, secret_hash, "
                                "redacted_value, created_at) VALUES ('key_1', 'org-1', 'proj_1', 'project', 'k', "
                                "'h', 'sk-proj-***abcd', 1)"))
    db.migrate()
    service = OrganizationService(db, Settings(data_dir=tmp_path), ProjectLimits(db, ModelLimits()), list)
    admin = OrganizationCaller("org-1")
    [owner] = service.list_users(admin, PAGE)[0]
    assert (owner.email, owner.role) == ("owner@localhost", "owner")
    [key] = service.list_project_keys(admin, "proj_1", PAGE)[0]
    assert key.owner.user is not None and key.owner.user.id == owner.id and key.owner.user.role == "owner"
    db.dispose()


def test_admin_keys_are_made_listed_expired_and_deleted(org: Org) -> None:
    created = org.service.create_admin_key(org.admin, wire.AdminApiKeyCreateRequest(name="ops"))
    body = created.model_dump(mode="json")
    assert_matches_schema(body, "AdminApiKeyCreateResponse")
    assert body["value"].startswith("sk-admin-") and body["owner"]["id"] == org.admin.user_id
    assert _principal(org, created.value) is not None
    listed = org.service.list_admin_keys(org.admin, PAGE)[0]
    assert {k.id for k in listed} == {org.first.admin_key.record.id, created.id}
    assert "value" not in org.service.retrieve_admin_key(org.admin, created.id).model_dump()
    short = org.service.create_admin_key(org.admin, wire.AdminApiKeyCreateRequest(name="brief", expires_in_seconds=3600))
    assert short.expires_at is not None and _principal(org, short.value) is not None
    with org.db.session() as session:  # its hour passes
        row = session.get(ApiKey, short.id)
        assert row is not None
        row.expires_at = row.created_at - 1
    assert _principal(org, short.value) is None
    assert org.service.delete_admin_key(org.admin, created.id).deleted
    assert _principal(org, created.value) is None
    with pytest.raises(NotFound):
        org.service.retrieve_admin_key(org.admin, org.first.project_key.record.id)
    assert [e.type for e in org.events(resource_ids=[created.id])] == ["api_key.deleted", "api_key.created"]


def test_service_accounts_can_be_renamed(org: Org) -> None:
    account = org.service.create_service_account(org.admin, org.first.project.id,
                                                 wire.ProjectServiceAccountCreateRequest(name="old"))
    renamed = org.service.update_service_account(org.admin, org.first.project.id, account.id,
                                                 wire.ProjectServiceAccountUpdateRequest(name="new", role="owner"))
    assert (renamed.name, renamed.role) == ("new", "owner")
    [event] = org.events(event_types=["service_account.updated"])
    assert event.model_dump()["service_account.updated"]["changes_requested"] == {"name": "new", "role": "owner"}
