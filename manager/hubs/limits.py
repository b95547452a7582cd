"""A Space's Hub limit as the gate sees it: whatever says how many Hubs may be connected.

The plans that decide it live in `manager.services` (above this layer), so the gate declares
what it needs here and is handed an implementation (`manager.services.quotas.Quotas`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar


class HubLimit(Protocol):
    def allows(self, used: int, more: int = 1) -> bool: ...

    def describe(self) -> str: ...


L = TypeVar("L", bound=HubLimit)


class HubQuotas(Protocol[L]):
    """Where a Space's Hub limit comes from: the plans, which live in `manager.services`
    (above this layer), so the gate is handed them instead of importing them."""

    async def hub_limit(self, space_id: str, ceiling: int) -> L: ...

    def hub_refused(self, space_id: str, hub_id: str, limit: L, source: str) -> None: ...


@dataclass(frozen=True, slots=True)
class HubCeiling:
    """MANAGER_HUB_LIMIT on its own (0: no limit), for a gate without plans."""

    value: int

    def allows(self, used: int, more: int = 1) -> bool:
        return not self.value or used + more <= self.value

    def describe(self) -> str:
        return f"hubsPerSpace {self.value} set by MANAGER_HUB_LIMIT"
