"""LOAD figures reach SQL a slice of the Hubs per sweep, every Hub once per load_flush_s:
one write of 10,000 rows at once stalled everything for seconds."""

from __future__ import annotations

from typing import cast

from sqlalchemy import func, select

from manager.db.models import Hub
from manager.hubs.registry import HubLink, LiveHub
from manager.hubs.state import LOAD
from manager.hubs.supervisor import HubSupervisor
from manager.services.context import Services
from tests.conftest import World


async def test_each_sweep_writes_a_slice_and_a_round_writes_them_all(svc: Services, world: World):
    hubs = [LiveHub(world.space_id, f"h{i}", cast(HubLink, None)) for i in range(40)]
    for hub in hubs:
        await svc.store.connected(hub, "", [])
        svc.registry.attach(hub)
        hub.state.apply(LOAD, {"avgLoad": 1, "memFree": 5})
        hub.load_dirty = True
    supervisor = HubSupervisor(svc.registry, svc.store, sweep_s=1.0, load_flush_s=4.0)

    async def written() -> int:
        async with svc.sessions() as s:
            q = select(func.count()).select_from(Hub).where(Hub.last_load.is_not(None))
            return int(await s.scalar(q) or 0)

    counts = []
    for _ in range(4):
        await supervisor.sweep()
        counts.append(await written())
    assert counts[-1] == 40  # one round of load_flush_s / sweep_s sweeps: every Hub
    steps = [b - a for a, b in zip([0, *counts], counts, strict=False)]
    assert max(steps) < 40  # never all at once
    assert not any(h.load_dirty for h in hubs)
