"""Small helpers every layer shares: the clock and identifiers. A leaf (it imports nothing
of ours), so the Hub layer can use them without reaching up into the services."""

from __future__ import annotations

import time
import uuid

MAX_DESCRIPTION = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def new_org_id() -> str:
    return f"org-{uuid.uuid4()}"


def space_id_for(org_id: str, suffix: str = "manager") -> str:
    """Space ids are `<orgId>-<suffix without dashes>` (space-api.md §1.6)."""
    return f"{org_id}-{suffix}"


def org_id_of(space_id: str) -> str:
    return space_id.rsplit("-", 1)[0]
