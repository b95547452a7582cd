"""Initial schema: organizations, Spaces, API tokens, access keys, Hubs, audit events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Reviewed by hand: times are epoch-ms BIGINTs, secrets are only ever stored as hashes
(`api_tokens.token_hash`, `access_keys.key_hash`), and `access_keys.prefix` is the
non-secret lookup part that Hub key proofs carry in clear.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organizations",
        sa.Column("id", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
    )
    op.create_table(
        "spaces",
        sa.Column("id", sa.String(120), nullable=False),
        sa.Column("org_id", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name="fk_spaces_org_id_organizations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_spaces"),
    )
    op.create_index("ix_spaces_org_id", "spaces", ["org_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("org_id", sa.String(80), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name="fk_api_tokens_org_id_organizations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
    )
    op.create_index("ix_api_tokens_org_id", "api_tokens", ["org_id"])
    op.create_table(
        "access_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("space_id", sa.String(120), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(200), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.id"], name="fk_access_keys_space_id_spaces", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_access_keys"),
        sa.UniqueConstraint("prefix", name="uq_access_keys_prefix"),
        sa.UniqueConstraint("space_id", "created_ms", name="uq_access_keys_space_id_created_ms"),
    )
    op.create_index("ix_access_keys_space_id", "access_keys", ["space_id"])
    op.create_table(
        "hubs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("space_id", sa.String(120), nullable=False),
        sa.Column("hub_id", sa.String(200), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("self_hosted", sa.Boolean(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_connected_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_disconnected_ms", sa.BigInteger(), nullable=True),
        sa.Column("disconnect_reason", sa.String(500), nullable=True),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("replica", sa.String(200), nullable=True),
        sa.Column("access_key_id", sa.Integer(), nullable=True),
        sa.Column("last_load", sa.JSON(), nullable=True),
        sa.Column("last_load_ms", sa.BigInteger(), nullable=True),
        sa.Column("network_info", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["access_key_id"],
            ["access_keys.id"],
            name="fk_hubs_access_key_id_access_keys",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["space_id"], ["spaces.id"], name="fk_hubs_space_id_spaces", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_hubs"),
        sa.UniqueConstraint("space_id", "hub_id", name="uq_hubs_space_id_hub_id"),
    )
    op.create_index("ix_hubs_space_id", "hubs", ["space_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(80), nullable=True),
        sa.Column("space_id", sa.String(120), nullable=True),
        sa.Column("hub_id", sa.String(200), nullable=True),
        sa.Column("op_code", sa.Integer(), nullable=False),
        sa.Column("op_state", sa.String(20), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=True),
        sa.Column("requestor_id", sa.String(200), nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_org_id", "audit_events", ["org_id"])
    op.create_index("ix_audit_events_space_time", "audit_events", ["space_id", "received_ms"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_space_time", table_name="audit_events")
    op.drop_index("ix_audit_events_org_id", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index("ix_hubs_space_id", table_name="hubs")
    op.drop_table("hubs")
    op.drop_index("ix_access_keys_space_id", table_name="access_keys")
    op.drop_table("access_keys")
    op.drop_index("ix_api_tokens_org_id", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index("ix_spaces_org_id", table_name="spaces")
    op.drop_table("spaces")
    op.drop_table("organizations")
