"""Verified Hub key proofs, so a restarted manager does not rerun scrypt for every Hub.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verified_proofs",
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("access_key_id", sa.Integer(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["access_key_id"],
            ["access_keys.id"],
            name="fk_verified_proofs_access_key_id_access_keys",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag", name="pk_verified_proofs"),
    )
    op.create_index("ix_verified_proofs_access_key_id", "verified_proofs", ["access_key_id"])


def downgrade() -> None:
    op.drop_index("ix_verified_proofs_access_key_id", table_name="verified_proofs")
    op.drop_table("verified_proofs")
