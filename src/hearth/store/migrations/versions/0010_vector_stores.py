"""Vector stores: stores, their files and file batches (the chunks live in the vector index).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("api_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("description", sa.String(512), nullable=True),
        sa.Column("embedding_model", sa.String(128), nullable=False),
        sa.Column("expires_after", sa.JSON, nullable=True),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("last_active_at", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=True),
    )
    op.create_index("ix_vector_stores_project_created", "vector_stores", ["project_id", "created_at", "id"])
    op.create_table(
        "vector_store_files",
        sa.Column("vector_store_id", sa.String(64), sa.ForeignKey("vector_stores.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.JSON, nullable=True),
        sa.Column("usage_bytes", sa.BigInteger, nullable=False),
        sa.Column("chunking_strategy", sa.JSON, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.BigInteger, nullable=False),
        sa.Column("pages", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_vector_store_files_store_created", "vector_store_files",
                    ["vector_store_id", "created_at", "id"])
    op.create_index("ix_vector_store_files_file", "vector_store_files", ["id"])
    op.create_index("ix_vector_store_files_batch", "vector_store_files", ["batch_id"])
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("vector_store_id", sa.String(64), sa.ForeignKey("vector_stores.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index("ix_vector_store_file_batches_store", "vector_store_file_batches", ["vector_store_id"])


def downgrade() -> None:
    op.drop_table("vector_store_file_batches")
    op.drop_table("vector_store_files")
    op.drop_table("vector_stores")
