"""Fine-tuning: jobs, their events and checkpoints.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fine_tuning_jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("base_model", sa.String(128), nullable=False),
        sa.Column("training_file", sa.String(64), nullable=False),
        sa.Column("validation_file", sa.String(64), nullable=True),
        sa.Column("suffix", sa.String(64), nullable=True),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("method", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("queue_job_id", sa.String(64), nullable=True),
        sa.Column("error", sa.JSON, nullable=True),
        sa.Column("fine_tuned_model", sa.String(256), nullable=True),
        sa.Column("model_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("adapter_path", sa.Text, nullable=True),
        sa.Column("trained_tokens", sa.BigInteger, nullable=True),
        sa.Column("result_files", sa.JSON, nullable=False),
        sa.Column("estimated_finish", sa.BigInteger, nullable=True),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_fine_tuning_jobs_project_created", "fine_tuning_jobs",
                    ["project_id", "created_at", "id"])
    op.create_index("ix_fine_tuning_jobs_model", "fine_tuning_jobs", ["fine_tuned_model"])
    op.create_table(
        "fine_tuning_events",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("fine_tuning_jobs.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON, nullable=True),
    )
    op.create_index("ix_fine_tuning_events_job", "fine_tuning_events", ["job_id", "created_at", "id"])
    op.create_table(
        "fine_tuning_checkpoints",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), sa.ForeignKey("fine_tuning_jobs.id"), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("step_number", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("fine_tuned_model_checkpoint", sa.String(256), nullable=False),
        sa.Column("adapter_path", sa.Text, nullable=False),
    )
    op.create_index("ix_fine_tuning_checkpoints_job", "fine_tuning_checkpoints",
                    ["job_id", "created_at", "id"])
    op.create_index("ix_fine_tuning_checkpoints_model", "fine_tuning_checkpoints",
                    ["fine_tuned_model_checkpoint"])


def downgrade() -> None:
    op.drop_table("fine_tuning_checkpoints")
    op.drop_table("fine_tuning_events")
    op.drop_table("fine_tuning_jobs")
