"""README "Connect a Hub", proven on the real STH 1.0.1 (`tests/interop/sth.py`):

- a wrong key gets 403 and the Hub stops retrying; a second Hub with the id of a connected,
  live one gets ID_DROP and stops; a Hub over the Space's limit gets LIMIT_EXCEEDED and stops
  (KEY_REVOKED through the API: `test_real_hub_lifecycle.py`);
- a key revoked with the CLI (`space-manager access-key revoke`, which only writes the
  database) reaches every Hub that joined with it within a few seconds, and they stop;
- too many failed key proofs from one address: 429 for a minute, and the Hub retries and
  joins once the minute is over;
- the SQLite database unusable: tunnels stay up and proxied calls keep working, API calls that
  need the database get `503 {"error":"Database unavailable; try again shortly"}` with
  `Retry-After: 2`, and everything works again once the database is back.

"Stops retrying" is read from the Hub's own log: STH 1.0.1 logs "Connecting to Manager" on
every attempt and retries every 2 s, so the count must not move over three intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from manager.hubs import keys
from manager.services import tokens
from manager.services.tokens import TokenService
from tests.conftest import eventually
from tests.interop.sth import HubFleet, RealHub
from tests.manager_process import BIN, manager_process
from tests.running import RunningManager, SpaceCalls

ATTEMPT = "Connecting to Manager"  # STH 1.0.1 logs it before every connection attempt
DROPPED = "Received pre drop message"  # ... and this on KEY_REVOKED, LIMIT_EXCEEDED, ID_DROP
RETRY_S = 2.0  # STH 1.0.1's reconnection delay
CLI_REVOKE_BOUND_S = 5.0  # "within a few seconds": the manager checks keys every 2.5 s
DB_UNAVAILABLE = {"error": "Database unavailable; try again shortly"}


async def in_log(hub: RealHub, text: str, timeout: float = 15) -> None:
    async def seen() -> bool:
        return text in hub.log()

    await eventually(seen, f"{text!r} in the log of {hub.hub_id or 'the Hub'}", timeout=timeout)


async def assert_no_more_attempts(*hubs: RealHub) -> None:
    """No Hub tries again over three of its 2 s retry intervals."""
    attempts = [hub.log().count(ATTEMPT) for hub in hubs]
    await asyncio.sleep(3 * RETRY_S + 0.5)
    assert [hub.log().count(ATTEMPT) for hub in hubs] == attempts, [h.log()[-1500:] for h in hubs]
    # It gave up on the platform, not on life: it keeps running locally. (STH 1.0.1 crashed,
    # TypeError in handleCommunicationRequest, when the manager closed a refused newcomer's
    # tunnel before the Hub's first LOAD: gate._stop_newcomer waits for it.)
    for hub in hubs:
        assert hub.proc is not None and hub.proc.poll() is None, hub.log()[-2000:]


def plain_log(hub: RealHub) -> str:
    """The Hub's log without its colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", hub.log())


def live_session(manager: RunningManager, hub_id: str) -> Any:
    live = manager.svc.registry.get(manager.world.space_id, hub_id)
    assert live is not None, f"{hub_id} is not connected"
    return live


# -- the Hub stops: 403, ID_DROP, LIMIT_EXCEEDED ------------------------------------------


async def test_a_wrong_key_gets_403_and_the_real_hub_stops_retrying(
    manager: RunningManager, real_hubs: HubFleet
):
    foreign = keys.derive_key(b"another manager's secret", keys.new_prefix())
    hub = await real_hubs.start("stranger", key=foreign, join=False)
    await in_log(hub, "CPM connection closed")
    assert "Space request close status [ 403 ]" in plain_log(hub)
    assert manager.svc.gate.refused.get("key") == 1
    assert hub.log().count(ATTEMPT) == 1
    await assert_no_more_attempts(hub)
    assert manager.svc.gate.refused.get("key") == 1  # nothing more reached the manager
    assert await manager.hubs() == []


async def test_a_second_real_hub_with_a_live_id_gets_id_drop_and_stops(
    manager: RunningManager, real_hubs: HubFleet
):
    first = await real_hubs.start("twin", description="the first")
    live = live_session(manager, "twin")
    before = await manager.hub("twin")
    newcomer = await real_hubs.start(
        "twin", join=False, home_name="sth-twin-newcomer", description="the newcomer"
    )
    await in_log(newcomer, DROPPED)
    await assert_no_more_attempts(newcomer)
    assert newcomer.log().count(ATTEMPT) == 1
    # The connected one stays: same tunnel, same record, healthy, never told to go.
    assert live_session(manager, "twin") is live
    after = await manager.hub("twin")
    assert after["isConnectionActive"] and after["healthy"]
    assert after["description"] == "the first"
    assert after["info"]["lastConnected"] == before["info"]["lastConnected"]
    assert DROPPED not in first.log() and first.log().count(ATTEMPT) == 1


async def test_a_real_hub_over_the_hub_limit_gets_limit_exceeded_and_stops(
    manager: RunningManager, real_hubs: HubFleet
):
    gate = manager.svc.gate
    gate.settings = dataclasses.replace(gate.settings, hub_limit=1)
    await real_hubs.start("only")
    extra = await real_hubs.start("extra", join=False)
    await in_log(extra, DROPPED)
    await assert_no_more_attempts(extra)
    assert extra.log().count(ATTEMPT) == 1
    assert [h["id"] for h in await manager.hubs()] == ["only"]


# -- a key revoked with the CLI -------------------------------------------------------------


async def cli(data_dir: Path, *args: str) -> str:
    """`space-manager --data-dir D ...` as its own process; its output."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN),
        "--data-dir",
        str(data_dir),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "MANAGER_DATABASE_URL"},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def audit_records(manager: SpaceCalls, until: Callable[[list[dict]], bool]) -> list[dict]:
    records: list[dict] = []
    url = f"/api/v1/space/{manager.world.space_id}/api/v1/audit"
    async with manager.client.stream("GET", url) as resp:
        assert resp.status_code == 200

        async def read() -> None:
            async for line in resp.aiter_lines():
                if line.strip():
                    records.append(json.loads(line))
                    if until(records):
                        return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), 10)
    return records


async def test_a_key_revoked_with_the_cli_stops_every_real_hub_that_joined_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Three keys revoked one after another (each at another point of the manager's check
    cycle): each time, every Hub of that key is gone within the bound, and only those."""
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    data_dir = tmp_path / "data"
    fleet: HubFleet | None = None
    async with manager_process(data_dir) as manager:
        try:
            base = f"/api/v1/space/{manager.world.space_id}/apikey"
            made = [
                (await manager.client.post(base, json={"description": f"k{i}"})).json()
                for i in range(3)
            ]
            joined = {0: ["c-1", "c-2"], 1: ["c-3"], 2: ["c-4"]}  # key index -> its Hubs
            fleet = HubFleet(manager, tmp_path)
            starts = [
                fleet.start(name, key=made[i]["accessKey"])
                for i, names in joined.items()
                for name in names
            ]
            starts.append(fleet.start("c-5", key=await manager.new_key("bystander")))
            hubs = {hub.hub_id: hub for hub in await asyncio.gather(*starts)}

            took: list[float] = []  # from the CLI's exit (the revocation is committed)
            with_cli: list[float] = []  # from the CLI's start
            for i, names in joined.items():
                created = str(made[i]["created"])
                started = time.monotonic()
                out = await cli(
                    data_dir, "access-key", "revoke", "--space", manager.world.space_id, created
                )
                assert "revoked 1 key(s)" in out
                revoked_at = time.monotonic()
                for name in names:
                    await fleet.wait_listed(name, active=False, timeout=CLI_REVOKE_BOUND_S + 5)
                took.append(time.monotonic() - revoked_at)
                with_cli.append(time.monotonic() - started)
                for name in names:  # told KEY_REVOKED, not just cut off
                    await in_log(hubs[name], DROPPED, timeout=2)
            pairs = zip(took, with_cli, strict=True)
            print(
                "CLI revoke: dropped",
                ", ".join(f"{t:.1f} s ({c:.1f} s with the CLI)" for t, c in pairs),
            )
            assert max(took) <= CLI_REVOKE_BOUND_S, f"dropped {took} s after the CLI"

            revoked = [hubs[name] for names in joined.values() for name in names]
            await assert_no_more_attempts(*revoked)
            listed = {h["id"]: h for h in await manager.hubs()}
            assert not any(listed[hub.hub_id]["isConnectionActive"] for hub in revoked)
            assert listed["c-5"]["isConnectionActive"] and listed["c-5"]["healthy"]
            assert DROPPED not in hubs["c-5"].log()
            assert "access key revoked; dropping" in manager.proc.logs()

            # Audited as the CLI's doing (15001).
            ids = {str(m["created"]) for m in made}

            def all_revoked(records: list[dict[str, Any]]) -> bool:
                return ids <= {r["objectId"] for r in records if r["opCode"] == 15001}

            records = await audit_records(manager, all_revoked)
            assert all_revoked(records), records[-5:]
            assert {r["requestorId"] for r in records if r["opCode"] == 15001} == {"cli"}
        finally:
            if fleet is not None:
                await fleet.stop_all()


# -- too many failed key proofs: 429 for a minute, then the Hub gets in ---------------------


class Clock:
    """Stands in for the `time` module inside `manager.hubs.keys` (the failure limiter)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


async def failed_connect(manager: RunningManager) -> int:
    """One CONNECT from 127.0.0.1 with a proof of a key this manager never issued."""
    foreign = keys.derive_key(b"another manager's secret", keys.new_prefix())
    proof = await asyncio.to_thread(keys.make_proof, foreign)  # scrypt: not on the loop
    space = manager.world.space_id
    head = (
        f"CONNECT /api/v1/{space.rsplit('-', 1)[0]}/{space}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f'Authorization: Digest cnonce="{proof}"\r\n\r\n'
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    try:
        writer.write(head)
        await writer.drain()
        return int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 15)).split(b" ", 2)[1])
    finally:
        writer.close()


async def test_a_real_hub_gets_429_for_a_minute_retries_and_then_joins(
    manager: RunningManager, real_hubs: HubFleet, monkeypatch: pytest.MonkeyPatch
):
    clock = Clock()
    monkeypatch.setattr(keys, "time", clock)  # the limiter's clock; the event loop keeps its own
    gate = manager.svc.gate
    assert [await failed_connect(manager) for _ in range(10)] == [403] * 10

    hub = await real_hubs.start("patient", join=False)  # the right key, from the same address

    async def refused_twice() -> bool:
        return gate.refused.get("failed_proofs", 0) >= 2

    await eventually(refused_twice, "two refused attempts of the real Hub", timeout=10)
    assert hub.log().count(ATTEMPT) >= 2  # it retries after a 429 ...
    assert await manager.hubs() == []  # ... and is kept out

    clock.now += 59.0
    refused = gate.refused["failed_proofs"]

    async def refused_again() -> bool:
        return gate.refused["failed_proofs"] > refused

    await eventually(refused_again, "another 429 at 59 s", timeout=10)
    assert await manager.hubs() == []  # still inside the minute

    clock.now += 1.0  # the minute is over: the next retry gets in
    over = time.monotonic()
    await real_hubs.wait_listed("patient", timeout=3 * RETRY_S + 5)
    print(f"429 lifted: the real Hub joined {time.monotonic() - over:.1f} s later")


# -- the database unusable ------------------------------------------------------------------

# Takes every WAL lock of the database (bytes 120-127 of its -shm file, the WAL locks SQLite
# documents in "WAL-mode File Format" §2.3.1) from another process, as a stuck writer or a
# backup tool holding the file would: a read or write then fails with SQLITE_PROTOCOL
# ("locking protocol") once SQLite's own retries run out (~10 s). Held until stdin closes.
LOCKER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
deadline = time.monotonic() + 10
while True:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 8, 120)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.002)
print("locked", flush=True)
sys.stdin.read()
"""


@contextlib.asynccontextmanager
async def database_locked(db_file: Path) -> AsyncIterator[None]:
    shm = db_file.with_name(db_file.name + "-shm")
    assert shm.exists(), f"{shm} missing: is the database in WAL mode?"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCKER,
        str(shm),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 15)).strip() == b"locked"
        yield
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@dataclass
class Timed:
    status: int
    body: Any
    retry_after: str | None
    seconds: float


async def timed(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> Timed:
    started = time.monotonic()
    resp = await client.request(method, url, **kw)
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    return Timed(
        resp.status_code, body, resp.headers.get("retry-after"), time.monotonic() - started
    )


async def test_the_database_unusable_tunnels_and_proxied_calls_go_on_api_answers_503(
    manager: RunningManager, real_hubs: HubFleet
):
    svc, world = manager.svc, manager.world
    db_file = Path(svc.settings.effective_database_url.split(":///", 1)[1])
    async with svc.sessions() as s, s.begin():
        seen_earlier = await TokenService.create(s, world.org_id, name="seen before")
        never_seen = await TokenService.create(s, world.org_id, name="never used")
    S = f"/api/v1/space/{world.space_id}/api/v1"
    keys_url = f"/api/v1/space/{world.space_id}/apikey"
    hub_api = f"{S}/sth/steady/api/v1"

    def client(token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=manager.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    async with client(seen_earlier.token) as earlier, client(never_seen.token) as stranger:
        assert (await earlier.get(f"{S}/version")).status_code == 200  # now seen, then not again
        seen_at = time.monotonic()
        hub = await real_hubs.start("steady")
        live = live_session(manager, "steady")
        attempts = hub.log().count(ATTEMPT)
        # Past the token cache's freshness: that token must be checked again, and cannot be.
        await asyncio.sleep(max(0.0, seen_at + tokens.CACHE_TTL_S + 0.5 - time.monotonic()))
        assert (await manager.client.get(keys_url)).status_code == 200  # the admin token: fresh

        async with database_locked(db_file):
            read, write, proxied, proxied_earlier, proxied_stranger = await asyncio.gather(
                timed(manager.client, "GET", keys_url),
                timed(manager.client, "POST", keys_url, json={"description": "in the outage"}),
                timed(manager.client, "GET", f"{hub_api}/load-check"),
                timed(earlier, "GET", f"{hub_api}/load-check"),
                timed(stranger, "GET", f"{hub_api}/version"),
            )
            # Tunnel untouched through the outage: same session, still healthy, no reconnect.
            assert live_session(manager, "steady") is live
            assert svc.registry.healthy(live)
            outage = {
                "read": read,
                "write": write,
                "proxied": proxied,
                "proxied, token seen a while ago": proxied_earlier,
                "proxied, token never seen": proxied_stranger,
            }
            print({k: f"{v.status} in {v.seconds:.1f} s" for k, v in outage.items()})

        # API calls that need the database: 503, the README's body, Retry-After: 2.
        for answer in (read, write, proxied_stranger):
            assert (answer.status, answer.body, answer.retry_after) == (503, DB_UNAVAILABLE, "2")
        # Proxied Hub calls keep working, also with a token last checked before the outage.
        assert proxied.status == 200 and "currentLoad" in proxied.body
        assert proxied_earlier.status == 200 and "currentLoad" in proxied_earlier.body
        assert hub.log().count(ATTEMPT) == attempts

        # The database is back: reads and writes work at once, the stranger gets in.
        back = await timed(manager.client, "GET", keys_url)
        assert back.status == 200 and back.seconds < 5
        made = await timed(manager.client, "POST", keys_url, json={"description": "after"})
        assert made.status == 200 and made.seconds < 5, made
        assert (await stranger.get(f"{hub_api}/version")).status_code == 200
        listed = await manager.hub("steady")
        assert listed["isConnectionActive"] and listed["healthy"]
        assert live_session(manager, "steady") is live

        # The proxied calls of the outage were audited once the database came back.
        def outage_calls(records: list[dict]) -> bool:
            return sum(r["objectId"] == "/api/v1/load-check" for r in records) >= 2

        records = await audit_records(manager, outage_calls)
        assert outage_calls(records), records[-5:]
