"""Sequence store: package metadata per Space (the packages themselves live on disk).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_sequences",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("space_id", sa.String(120), nullable=False),
        sa.Column("seq_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name="fk_stored_sequences_space_id_spaces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stored_sequences"),
        sa.UniqueConstraint("space_id", "seq_id", name="uq_stored_sequences_space_id_seq_id"),
    )
    op.create_index("ix_stored_sequences_space_id", "stored_sequences", ["space_id"])


def downgrade() -> None:
    op.drop_index("ix_stored_sequences_space_id", table_name="stored_sequences")
    op.drop_table("stored_sequences")
