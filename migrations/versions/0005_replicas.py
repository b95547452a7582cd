"""Replicas: a lease per manager replica, and a connection epoch per Hub.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Reviewed by hand: one new table and one new column with a server default (a plain
ALTER TABLE ADD COLUMN on SQLite, no batch copy). Every existing Hub starts at epoch 0;
the next admission makes it 1.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("peer_url", sa.String(500), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    op.add_column("hubs", sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("hubs") as batch:
        batch.drop_column("epoch")
    op.drop_table("replicas")
