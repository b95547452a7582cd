"""A storm of Hubs (Node peers, `--count`) joining at once goes through the admission queue:
at most MANAGER_MAX_ADMISSIONS of them check keys and register at a time, every one of them
ends up connected and healthy, and with a tiny wait cap the ones turned away (503) join by
retrying, as an STH does.

"At a time" is measured on the work itself (the key check, the Hub id claim, the connect
record), by wrapping those methods of the live gate, not by the queue's own counters."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from manager.config import Settings
from manager.hubs.gate import HubGate
from manager.hubs.keys import make_proof
from tests.conftest import eventually
from tests.interop.peer import HubPeer
from tests.running import RunningManager

PROOFS = 8  # distinct key proofs dealt to the peers, so some key checks run scrypt


class Overlap:
    """How many tasks are inside the wrapped methods at once, and the most ever."""

    def __init__(self) -> None:
        self.inside: set[asyncio.Task[Any]] = set()
        self.most = 0
        self.calls = 0

    def wrap(self, owner: object, name: str) -> None:
        method: Callable[..., Awaitable[Any]] = getattr(owner, name)

        @functools.wraps(method)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            task = asyncio.current_task()
            assert task is not None
            self.inside.add(task)
            self.most = max(self.most, len(self.inside))
            self.calls += 1
            try:
                return await method(*args, **kwargs)
            finally:
                self.inside.discard(task)

        setattr(owner, name, counted)

    def watch(self, gate: HubGate) -> None:
        self.wrap(gate, "_check_key")
        self.wrap(gate, "_claim_id")
        self.wrap(gate.store, "connected")


async def proof_file(key: str, path: Path) -> Path:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=2) as pool:
        proofs = await asyncio.gather(
            *(loop.run_in_executor(pool, make_proof, key) for _ in range(PROOFS))
        )
    path.write_text(json.dumps(proofs))
    return path


async def start_storm(
    manager: RunningManager, tmp_path: Path, count: int, *args: str
) -> tuple[HubPeer, set[str]]:
    key = await manager.new_key()
    proofs = await proof_file(key, tmp_path / "proofs.json")
    peer = await HubPeer.start(
        manager.url,
        manager.world.space_id,
        key,
        *("--id", "storm", "--count", str(count), "--proofs", str(proofs)),
        *("--load-interval", "1000", "--max-reconnections", "-1", *args),
    )
    return peer, {f"storm-{i}" for i in range(count)}


async def all_healthy(manager: RunningManager, ids: set[str], timeout: float) -> None:
    async def check() -> set[str] | None:
        listed = {h["id"]: h for h in await manager.hubs()}
        missing = {
            i
            for i in ids
            if not (i in listed and listed[i]["isConnectionActive"] and listed[i]["healthy"])
        }
        return None if missing else ids

    await eventually(check, f"all {len(ids)} Hubs connected and healthy", timeout=timeout)


class TestStorm:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, max_admissions=2)

    @pytest.mark.timeout(60)
    async def test_a_storm_is_admitted_two_at_a_time_and_all_join(
        self, manager: RunningManager, tmp_path: Path
    ):
        gate = manager.svc.gate
        overlap = Overlap()
        overlap.watch(gate)
        peer, ids = await start_storm(manager, tmp_path, 250)
        try:
            await all_healthy(manager, ids, timeout=25)
            ready = await peer.wait_for(event="ready")
            assert (ready["connected"], ready["failed"]) == (250, 0)
        finally:
            await peer.stop()
        # the work ran two at a time, no more, and the storm did queue
        assert overlap.most == 2
        assert overlap.calls >= 3 * 250  # a key check, an id claim and a connect record each
        assert gate.admissions.peak_running == 2
        assert gate.admissions.peak_waiting > 20
        assert (gate.admissions.running, gate.admissions.waiting) == (0, 0)
        assert gate.refused == {}  # 10 s of waiting was plenty: nobody turned away
        assert peer.count(event="gave_up") == peer.count(event="abandoned") == 0
        assert {ev["status"] for ev in peer.events if ev.get("event") == "connected"} == {200}
        assert 1 <= gate.proofs.scrypt_runs <= PROOFS
        metrics = (await manager.client.get("/api/v1/metrics")).text
        assert "manager_admissions_waiting 0.0" in metrics
        assert "manager_admission_wait_seconds_count" in metrics
        count = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("manager_admission_wait_seconds_count")
        )
        assert count >= 2 * 250  # every admission's two slots


class TestTinyWait:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, max_admissions=1, admission_wait_s=0.02)

    @pytest.mark.timeout(60)
    async def test_tunnels_turned_away_with_503_join_by_retrying(
        self, manager: RunningManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ):
        caplog.set_level(logging.WARNING, logger="manager.hubs")
        gate = manager.svc.gate
        overlap = Overlap()
        overlap.watch(gate)
        peer, ids = await start_storm(manager, tmp_path, 200, "--reconnection-delay", "300")
        t0 = asyncio.get_running_loop().time()
        try:
            await all_healthy(manager, ids, timeout=30)
        finally:
            await peer.stop()
        took = asyncio.get_running_loop().time() - t0
        statuses = [ev["status"] for ev in peer.events if ev.get("event") == "connected"]
        busy = gate.refused.get("busy", 0)
        assert busy > 0 and set(gate.refused) == {"busy"}
        assert set(statuses) == {200, 503}  # never a 500, never a hang
        # every refusal is a 503 before the tunnel opens: a registration (after the 200) is
        # not held to the tiny wait, so no tunnel was opened only to be closed again
        assert statuses.count(503) == busy
        assert statuses.count(200) == 200
        assert peer.count(event="gave_up") == peer.count(event="abandoned") == 0
        assert overlap.most == 1
        lines = [r for r in caplog.records if r.getMessage().startswith("admissions busy")]
        assert 1 <= len(lines) <= 1 + took / 10, [r.getMessage() for r in lines]
        assert len(lines) < busy
