"""The SQL schema, as typed SQLAlchemy 2 models.

Owns table and column definitions only; queries live in `repo.py` and rules in
`manager.services`. Times are epoch milliseconds (BIGINT) so SQLite and PostgreSQL
store and compare them identically and the API can hand them out unchanged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Space(Base):
    __tablename__ = "spaces"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ApiToken(Base):
    """A user's API token; only its SHA-256 is stored (it carries 256 random bits)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AccessKey(Base):
    """A Space's access key for self-hosted Hubs; the key itself is never stored."""

    __tablename__ = "access_keys"
    __table_args__ = (UniqueConstraint("space_id", "created_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(String(1000), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(200))
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Hub(Base):
    """A Hub registration and its last known connection state."""

    __tablename__ = "hubs"
    __table_args__ = (UniqueConstraint("space_id", "hub_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    hub_id: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    self_hosted: Mapped[bool] = mapped_column(Boolean, default=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_connected_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_disconnected_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    disconnect_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    replica: Mapped[str | None] = mapped_column(String(200), nullable=True)
    access_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("access_keys.id", ondelete="SET NULL"), nullable=True
    )
    last_load: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_load_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    network_info: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # Incremented on every admission: a route to (replica, epoch) that no longer matches is
    # stale, whichever replica holds the Hub now (manager.replicas).
    epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Replica(Base):
    """A running manager replica, alive while its lease is in the future."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    peer_url: Mapped[str] = mapped_column(String(500))
    started_ms: Mapped[int] = mapped_column(BigInteger)
    lease_until_ms: Mapped[int] = mapped_column(BigInteger)


class AuditEvent(Base):
    """One audit record (space-api.md §3.5.6), written as things happen."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_space_time", "space_id", "received_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str | None] = mapped_column(String(80), nullable=True, index=True)
    space_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    hub_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    op_code: Mapped[int] = mapped_column(Integer)
    op_state: Mapped[str] = mapped_column(String(20), default="")
    object_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    requestor_id: Mapped[str] = mapped_column(String(200), default="system")
    received_ms: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class StoredSequence(Base):
    """A Sequence package kept in the Space's store; the bytes live on disk, not in SQL."""

    __tablename__ = "stored_sequences"
    __table_args__ = (UniqueConstraint("space_id", "seq_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space_id: Mapped[str] = mapped_column(ForeignKey("spaces.id", ondelete="CASCADE"), index=True)
    seq_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    version: Mapped[str] = mapped_column(String(100), default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1000))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class VerifiedProof(Base):
    """A Hub key proof that passed scrypt once, kept as an HMAC tag under the derived key.

    Hubs resend the same proof on every reconnect; remembering it across restarts turns a
    reconnect storm of N Hubs from N scrypt runs into N indexed lookups.
    """

    __tablename__ = "verified_proofs"

    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    access_key_id: Mapped[int] = mapped_column(
        ForeignKey("access_keys.id", ondelete="CASCADE"), index=True
    )
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Plan(Base):
    """A named set of limits (space-api has none; see manager.services.plans). NULL is
    unlimited, so the built-in `default` row, all NULLs, is today's behaviour."""

    __tablename__ = "plans"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    hubs_per_space: Mapped[int | None] = mapped_column(Integer, nullable=True)
    spaces_per_org: Mapped[int | None] = mapped_column(Integer, nullable=True)
    store_bytes_per_space: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    requests_per_second: Mapped[int | None] = mapped_column(Integer, nullable=True)
    burst: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class OrgPlan(Base):
    """Which plan an organization is on; an organization without a row is on `default`."""

    __tablename__ = "org_plans"

    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    plan_name: Mapped[str] = mapped_column(ForeignKey("plans.name"), index=True)
    set_ms: Mapped[int] = mapped_column(BigInteger)


class SpaceLimit(Base):
    """A Space's own value for one of its plan's per-Space limits (NULL: unlimited).

    One row per overridden limit, so "no row" (use the plan's) and "unlimited" differ."""

    __tablename__ = "space_limits"

    space_id: Mapped[str] = mapped_column(
        ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    set_ms: Mapped[int] = mapped_column(BigInteger)
