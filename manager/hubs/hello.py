"""What a tunnel's head says about its Hub, and its place in its source address's quota.

Pure functions and small values the gate builds an admission from; parsed here so fuzzing
and unit tests reach them without a gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from manager.common import org_id_of
from manager.db.models import AccessKey


@dataclass(frozen=True, slots=True)
class HubHello:
    """Who the tunnel says it is, once its key is checked."""

    space_id: str
    requested_id: str
    description: str
    tags: list[str]
    key_id: int
    source: str
    slot: SourceSlot
    via_connector: bool = False  # a WebSocket tunnel from `space-manager connect`


class SourceSlot:
    """One tunnel's place in its source address's quota; giving it back twice is harmless."""

    def __init__(self, counts: dict[str, int], source: str) -> None:
        self._counts = counts
        self._source = source
        self._held = True
        counts[source] = counts.get(source, 0) + 1

    def release(self) -> None:
        if self._held:
            self._held = False
            left = self._counts[self._source] - 1
            if left:
                self._counts[self._source] = left
            else:
                del self._counts[self._source]


def usable_key_id(row: AccessKey | None, space_id: str) -> int | None:
    """The key's id if it may admit a Hub to `space_id`."""
    if row is None or row.space_id != space_id or row.revoked_ms is not None:
        return None
    return row.id


def space_of(target: str) -> str | None:
    """`/[prefix/]api/v1/<org>/<space>/` → the Space id, if org and Space agree."""
    parts = [p for p in target.split("?")[0].split("/") if p]
    if len(parts) < 4 or parts[-4] != "api":
        return None
    org, space = parts[-2], parts[-1]
    if not space or org_id_of(space) != org or len(space) > 120:
        return None
    return space


def tags_of(raw: str) -> list[str]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    # STH 1.0.1 splits `--tags "a, b"` on the comma without trimming: " b" means "b".
    tags = (str(t).strip()[:100] for t in value if isinstance(t, str | int | float))
    return [t for t in tags if t][:50]
