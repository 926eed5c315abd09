"""The Administration API: users, project members, service accounts, invites, rate limits, audit logs.

Keys gain an owner (a user or a service account). An organization that
existed before gets an owner user, ``owner@localhost``, who owns its keys
and belongs to every project, so every key has the owner the API shows.

Revision ID: 0006
Revises: 0005
"""

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("user_id", sa.String(64), nullable=True))
    op.add_column("api_keys", sa.Column("service_account_id", sa.String(64), nullable=True))
    op.add_column("api_keys", sa.Column("expires_at", sa.BigInteger, nullable=True))
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])
    op.create_index("ix_api_keys_service_account_id", "api_keys", ["service_account_id"])
    op.create_table(
        "users",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_users_org_email", "users", ["organization_id", "email"], unique=True)
    op.create_table(
        "project_members",
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("user_id", sa.String(64), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "service_accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_service_accounts_project_created", "service_accounts", ["project_id", "created_at", "id"])
    op.create_table(
        "invites",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("projects", sa.JSON, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("accepted_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_invites_organization_id", "invites", ["organization_id"])
    op.create_index("ix_invites_token_hash", "invites", ["token_hash"], unique=True)
    op.create_table(
        "project_rate_limits",
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        *(sa.Column(name, sa.BigInteger, nullable=True) for name in (
            "max_requests_per_1_minute", "max_tokens_per_1_minute", "max_images_per_1_minute",
            "max_audio_megabytes_per_1_minute", "max_requests_per_1_day", "batch_1_day_max_input_tokens")),
    )
    op.create_table(
        "audit_logs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.JSON, nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("actor_email", sa.String(320), nullable=True),
        sa.Column("resource_id", sa.String(128), nullable=True),
        sa.Column("payload", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_logs_org_created", "audit_logs", ["organization_id", "created_at", "id"])
    _adopt_existing_keys()


def _adopt_existing_keys() -> None:
    connection = op.get_bind()
    created = int(time.time())
    for (org_id,) in connection.execute(sa.text("SELECT id FROM organizations")).all():
        user_id = f"user-{secrets.token_hex(12)}"
        connection.execute(sa.text(
            "INSERT INTO users (id, organization_id, email, name, role, created_at) "
            "VALUES (:id, :org, 'owner@localhost', 'Owner', 'owner', :created)"),
            {"id": user_id, "org": org_id, "created": created})
        connection.execute(sa.text("UPDATE api_keys SET user_id = :user WHERE organization_id = :org"),
                           {"user": user_id, "org": org_id})
        for (project_id,) in connection.execute(
                sa.text("SELECT id FROM projects WHERE organization_id = :org"), {"org": org_id}).all():
            connection.execute(sa.text(
                "INSERT INTO project_members (project_id, user_id, role, created_at) "
                "VALUES (:project, :user, 'owner', :created)"),
                {"project": project_id, "user": user_id, "created": created})


def downgrade() -> None:
    op.drop_table("audit_logs")
    op.drop_table("project_rate_limits")
    op.drop_table("invites")
    op.drop_table("service_accounts")
    op.drop_table("project_members")
    op.drop_table("users")
    op.drop_index("ix_api_keys_service_account_id", "api_keys")
    op.drop_index("ix_api_keys_user_id", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("service_account_id")
        batch.drop_column("user_id")
