"""Audit records (space-api.md §3.5.6) written to SQL as things happen.

Codes 14000/14001 are the platform's Hub connected/disconnected; 14002 (Hub record
deleted), 14003 (Hub refused with LIMIT_EXCEEDED), the access-key codes (15000 created,
15001 revoked) and 15100 for a proxied operation are ours, documented in the README,
because the original platform publishes none for them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from manager.common import now_ms, org_id_of
from manager.db import repo
from manager.db.models import AuditEvent

HUB_CONNECTED = 14000
HUB_DISCONNECTED = 14001
KEY_CREATED = 15000
KEY_REVOKED = 15001
HUB_DELETED = 14002
HUB_LIMIT_EXCEEDED = 14003  # a Hub refused: its Space has as many as its plan allows
PROXIED_OPERATION = 15100


async def record(s: AsyncSession, **fields: Any) -> None:
    await repo.add_audit(s, AuditEvent(**row(**fields)))


def row(
    *,
    space_id: str | None,
    op_code: int,
    op_state: str = "",
    hub_id: str | None = None,
    object_id: str | None = None,
    requestor_id: str = "system",
    detail: dict[str, Any] | None = None,
    received_ms: int | None = None,
) -> dict[str, Any]:
    """An audit_events row as column values."""
    return {
        "org_id": org_id_of(space_id) if space_id else None,
        "space_id": space_id,
        "hub_id": hub_id,
        "op_code": op_code,
        "op_state": op_state,
        "object_id": object_id,
        "requestor_id": requestor_id,
        "received_ms": received_ms if received_ms is not None else now_ms(),
        "detail": detail,
    }


def as_record(ev: AuditEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "opState": ev.op_state,
        "opCode": ev.op_code,
        "requestId": f"audit-{ev.id}",
        "objectId": ev.object_id or "",
        "requestorId": ev.requestor_id,
        "receivedAt": ev.received_ms,
    }
    if ev.hub_id:
        out["hostId"] = ev.hub_id
    if ev.space_id:
        out["spaceId"] = ev.space_id
    if ev.detail:
        out.update({k: v for k, v in ev.detail.items() if k not in out})
    return out
