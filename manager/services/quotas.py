"""The plans in force, kept in memory for the paths that must not wait on SQL per call.

Hub admission (every reconnect of 10,000 Hubs) and the rate limiter (every proxied request)
read limits from a snapshot of all plans, organization plans and Space overrides. It is
read once at first use and again in the background when older than `fresh_s`, so a change
made by another process (the CLI, another replica) applies within seconds, one made through
this process's API at once (`refresh`). If the database cannot be read, the last snapshot
stays in force. Refusals are counted here, by limit, for the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager.common import org_id_of
from manager.db import audit, repo
from manager.db.engine import describe_error
from manager.services import plans
from manager.services.audit_stream import AuditWriter
from manager.services.plans import Limit, PlanLimits

log = logging.getLogger("manager.services")

FRESH_S = 2.0


@dataclass(frozen=True, slots=True)
class PlanSnapshot:
    plans: Mapping[str, PlanLimits] = field(default_factory=dict)
    org_plans: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, int | None]] = field(default_factory=dict)

    def plan_of_org(self, org_id: str) -> PlanLimits:
        name = self.org_plans.get(org_id, plans.DEFAULT_PLAN)
        return self.plans.get(name) or plans.PlanLimits(name, {})

    def space_limit(self, space_id: str, name: str) -> Limit:
        plan = self.plan_of_org(org_id_of(space_id))
        return plans.effective(plan, self.overrides.get(space_id, {}), name)


class Quotas:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], fresh_s: float = FRESH_S):
        self.sessions = sessions
        self.fresh_s = fresh_s
        self.audit: AuditWriter | None = None
        self.refusals: dict[str, int] = {}
        self._snapshot: PlanSnapshot | None = None
        self._read_at = 0.0
        self._reading: asyncio.Task[PlanSnapshot] | None = None
        self._started = 0  # reads started and applied: an older read never wins
        self._applied = 0

    async def current(self) -> PlanSnapshot:
        """The snapshot; only the very first call waits for the database."""
        snapshot = self.snapshot_now()
        if snapshot is None:
            return await asyncio.shield(self._read_in_background())
        return snapshot

    def snapshot_now(self) -> PlanSnapshot | None:
        """The snapshot without waiting (a stale one starts a read in the background); None
        only before the first read, which `current` waits for."""
        if self._snapshot is not None and time.monotonic() - self._read_at > self.fresh_s:
            self._read_in_background()
        return self._snapshot

    async def refresh(self) -> PlanSnapshot:
        """Read again now: after an admin change, so this process applies it at once."""
        return await self._read()

    def _read_in_background(self) -> asyncio.Task[PlanSnapshot]:
        if self._reading is None or self._reading.done():
            self._read_at = time.monotonic()  # one read per period, even if it fails
            self._reading = asyncio.get_running_loop().create_task(self._read())
        return self._reading

    async def _read(self) -> PlanSnapshot:
        self._started += 1
        number = self._started
        try:
            async with self.sessions() as s:
                snapshot = PlanSnapshot(
                    plans={p.name: p for p in await plans.list_plans(s)},
                    org_plans=await repo.all_org_plans(s),
                    overrides=await repo.all_space_overrides(s),
                )
        except Exception as exc:
            log.warning("plans not reread, keeping the last ones: %s", describe_error(exc))
            if self._snapshot is None:
                self._snapshot = PlanSnapshot()  # until the database answers: the default
            return self._snapshot
        if number > self._applied:
            self._snapshot, self._applied = snapshot, number
        return snapshot

    async def aclose(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading

    def refused(self, limit: str) -> None:
        self.refusals[limit] = self.refusals.get(limit, 0) + 1

    async def hub_limit(self, space_id: str, ceiling: int) -> Limit:
        """A Space's Hub limit for the gate: its plan's (or its own), under the global
        ceiling (MANAGER_HUB_LIMIT). From memory; only the first call after a start waits."""
        limit = (await self.current()).space_limit(space_id, plans.HUBS)
        return limit.under_ceiling(ceiling, "MANAGER_HUB_LIMIT")

    def hub_refused(self, space_id: str, hub_id: str, limit: Limit, source: str) -> None:
        """A Hub sent LIMIT_EXCEEDED: counted, and in the Space's audit stream."""
        self.refused(limit.name)
        if self.audit is not None:
            self.audit.add(
                space_id=space_id,
                op_code=audit.HUB_LIMIT_EXCEEDED,
                op_state="refused",
                hub_id=hub_id,
                object_id=hub_id,
                detail={
                    "reason": "LIMIT_EXCEEDED",
                    "limit": limit.name,
                    "max": limit.value,
                    "plan": limit.plan,
                    "limitSource": limit.source,
                    "source": source,
                },
            )
