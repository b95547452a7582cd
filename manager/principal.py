"""Who is calling: a user token, or a Hub speaking for its own Space through its tunnel."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: str
    token_id: str | None = None
    is_admin: bool = False
    hub_space_id: str | None = None
    hub_id: str | None = None

    @property
    def requestor(self) -> str:
        """The id the Hubs record as `requestorId` (x-mw-billable)."""
        if self.token_id:
            return self.token_id
        return f"hub:{self.hub_id}" if self.hub_id else "system"

    def may_use_space(self, space_id: str, space_org_id: str) -> bool:
        if self.hub_space_id is not None:
            return self.hub_space_id == space_id
        return self.is_admin or self.org_id == space_org_id
