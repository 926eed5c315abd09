"""Assistants: assistants and their v1 files, threads, messages, runs and run steps.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assistants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("instructions", sa.Text, nullable=True),
        sa.Column("tools", sa.JSON, nullable=False),
        sa.Column("tool_resources", sa.JSON, nullable=True),
        sa.Column("file_ids", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("temperature", sa.Double, nullable=True),
        sa.Column("top_p", sa.Double, nullable=True),
        sa.Column("response_format", sa.JSON, nullable=True),
    )
    op.create_index("ix_assistants_project_created", "assistants", ["project_id", "created_at", "id"])
    op.create_table(
        "assistant_files",
        sa.Column("assistant_id", sa.String(64), sa.ForeignKey("assistants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("file_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "assistant_threads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("tool_resources", sa.JSON, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
    )
    op.create_index("ix_assistant_threads_project", "assistant_threads", ["project_id"])
    op.create_table(
        "assistant_messages",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("assistant_threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("incomplete_details", sa.JSON, nullable=True),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.Column("incomplete_at", sa.BigInteger, nullable=True),
        sa.Column("assistant_id", sa.String(64), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("attachments", sa.JSON, nullable=True),
        sa.Column("file_ids", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
    )
    op.create_index("ix_assistant_messages_thread", "assistant_messages", ["thread_id", "created_at", "id"])
    op.create_table(
        "assistant_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=True),
        sa.Column("thread_id", sa.String(64), sa.ForeignKey("assistant_threads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("assistant_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("required_action", sa.JSON, nullable=True),
        sa.Column("last_error", sa.JSON, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("cancelled_at", sa.BigInteger, nullable=True),
        sa.Column("failed_at", sa.BigInteger, nullable=True),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.Column("incomplete_details", sa.JSON, nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("instructions", sa.Text, nullable=False),
        sa.Column("tools", sa.JSON, nullable=False),
        sa.Column("file_ids", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("usage", sa.JSON, nullable=True),
        sa.Column("temperature", sa.Double, nullable=True),
        sa.Column("top_p", sa.Double, nullable=True),
        sa.Column("max_prompt_tokens", sa.Integer, nullable=True),
        sa.Column("max_completion_tokens", sa.Integer, nullable=True),
        sa.Column("truncation_strategy", sa.JSON, nullable=True),
        sa.Column("tool_choice", sa.JSON, nullable=True),
        sa.Column("parallel_tool_calls", sa.Boolean, nullable=False),
        sa.Column("response_format", sa.JSON, nullable=True),
        sa.Column("driver", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.Double, nullable=True),
    )
    op.create_index("ix_assistant_runs_thread", "assistant_runs", ["thread_id", "created_at", "id"])
    op.create_table(
        "assistant_run_steps",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), sa.ForeignKey("assistant_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("assistant_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step_details", sa.JSON, nullable=False),
        sa.Column("last_error", sa.JSON, nullable=True),
        sa.Column("expired_at", sa.BigInteger, nullable=True),
        sa.Column("cancelled_at", sa.BigInteger, nullable=True),
        sa.Column("failed_at", sa.BigInteger, nullable=True),
        sa.Column("completed_at", sa.BigInteger, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("usage", sa.JSON, nullable=True),
    )
    op.create_index("ix_assistant_run_steps_run", "assistant_run_steps", ["run_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("assistant_run_steps")
    op.drop_table("assistant_runs")
    op.drop_table("assistant_messages")
    op.drop_table("assistant_threads")
    op.drop_table("assistant_files")
    op.drop_table("assistants")
