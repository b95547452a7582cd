"""Plans and quotas: named limit sets, each organization's plan, per-Space overrides.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Reviewed by hand: only new tables, so nothing existing is rewritten (no batch copies on
SQLite). NULL means unlimited. The `default` plan is inserted all-NULL, which is what the
manager did before plans existed; organizations without an `org_plans` row use it.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    plans = op.create_table(
        "plans",
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("hubs_per_space", sa.Integer(), nullable=True),
        sa.Column("spaces_per_org", sa.Integer(), nullable=True),
        sa.Column("store_bytes_per_space", sa.BigInteger(), nullable=True),
        sa.Column("requests_per_second", sa.Integer(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_plans"),
    )
    op.create_table(
        "org_plans",
        sa.Column("org_id", sa.String(80), nullable=False),
        sa.Column("plan_name", sa.String(80), nullable=False),
        sa.Column("set_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name="fk_org_plans_org_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["plan_name"], ["plans.name"], name="fk_org_plans_plan_name_plans"),
        sa.PrimaryKeyConstraint("org_id", name="pk_org_plans"),
    )
    op.create_index("ix_org_plans_plan_name", "org_plans", ["plan_name"])
    op.create_table(
        "space_limits",
        sa.Column("space_id", sa.String(120), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("set_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["space_id"],
            ["spaces.id"],
            name="fk_space_limits_space_id_spaces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("space_id", "name", name="pk_space_limits"),
    )
    op.bulk_insert(plans, [{"name": "default", "created_ms": int(time.time() * 1000)}])


def downgrade() -> None:
    op.drop_table("space_limits")
    op.drop_index("ix_org_plans_plan_name", table_name="org_plans")
    op.drop_table("org_plans")
    op.drop_table("plans")
