"""Keeps the live Hub table honest: closes silent tunnels, flushes LOAD figures in batches,
and drops Hubs whose access key was revoked (through the API at once, or by an operator's
CLI or another replica within one sweep)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from manager import rounds
from manager.hubs.endings import Ending
from manager.hubs.registry import HubRegistry, LiveHub
from manager.hubs.state import KEY_REVOKED
from manager.hubs.store import HubStore

log = logging.getLogger("manager.hubs")


class HubSupervisor:
    def __init__(
        self,
        registry: HubRegistry,
        store: HubStore,
        *,
        sweep_s: float = 2.5,
        load_flush_s: float = 60.0,
    ) -> None:
        self.registry = registry
        self.store = store
        self.sweep_s = sweep_s
        self.load_flush_s = load_flush_s
        self._sweeps = 0
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        released = await self.store.release_replica()
        if released:
            log.info("marked %d Hubs of the previous run disconnected", released)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        await rounds.stop(self._task, self._stopping)
        await self.store.save_loads(list(self.registry))
        for hub in list(self.registry):
            await hub.link.close(Ending.SHUTDOWN)
        # Let each tunnel's own task record its disconnect.
        deadline = time.monotonic() + 5
        while len(self.registry) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _loop(self) -> None:
        while True:
            due = time.monotonic() + self.sweep_s
            if not await rounds.pause(self._stopping, self.sweep_s):
                return
            try:
                await self.sweep(lag=time.monotonic() - due)
            except Exception as exc:  # a database hiccup must not stop supervision
                log.warning("hub sweep failed: %r", exc)

    async def sweep(self, lag: float = 0.0) -> None:
        now = time.monotonic()
        limit = self.registry.healthy_after_s
        if lag > self.sweep_s:
            # We woke up late: the event loop is behind, and LOAD lines may be sitting unread
            # in socket buffers. Closing "silent" Hubs now would blame them for our delay and
            # start a reconnect storm that makes the lag worse.
            log.warning("event loop %.1f s behind; not closing silent Hubs this sweep", lag)
            limit = float("inf")
        for hub in list(self.registry):
            last = hub.state.load_at or hub.connected_at
            if now - last > limit:
                log.warning(
                    "hub %s@%s: no LOAD for %.0f s; closing its tunnel",
                    hub.hub_id,
                    hub.space_id,
                    now - last,
                )
                await hub.link.close(f"no LOAD for {limit:.0f} s")
        # Each Hub's LOAD figures are written once per load_flush_s, a slice of the Hubs per
        # sweep: at 10,000 Hubs one write of them all took 2.8 s of the database (and the
        # event loop's share of it) every flush, a spike in every latency.
        self._sweeps += 1
        slices = max(1, round(self.load_flush_s / self.sweep_s))
        turn = self._sweeps % slices
        dirty = [h for h in self.registry if h.load_dirty and hash(h.hub_id) % slices == turn]
        for hub in dirty:
            hub.load_dirty = False
        try:
            await self.store.save_loads(dirty)
        except BaseException:
            for hub in dirty:
                hub.load_dirty = True  # written with its next turn instead
            raise
        key_ids = {h.access_key_id for h in self.registry if h.access_key_id is not None}
        revoked = await self.store.revoked_among(key_ids)
        if revoked:
            self._drop(self.registry.joined_with(revoked))

    async def on_keys_revoked(self, event: dict[str, Any]) -> None:
        """Keys revoked on any replica (event `{"keys": [id, ...]}`): drop their Hubs here."""
        self.store.forget_keys()
        ids = {k for k in event.get("keys") or [] if isinstance(k, int)}
        self._drop(self.registry.joined_with(ids))

    def _drop(self, hubs: list[LiveHub]) -> None:
        for hub in hubs:
            log.info("hub %s@%s: access key revoked; dropping", hub.hub_id, hub.space_id)
            task = asyncio.get_running_loop().create_task(self._revoke(hub))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    @staticmethod
    async def _revoke(hub: LiveHub) -> None:
        await hub.link.send_and_close(KEY_REVOKED, Ending.KEY_REVOKED)
