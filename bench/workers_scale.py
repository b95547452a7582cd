"""10,000 idle Hubs on `space-manager serve --workers 2` (PostgreSQL): the scale-out issue's
"one 2-core machine holds 10,000 Hubs". Node-peer Hubs (LOAD every 5 s, 500 distinct key
proofs) join through the shared port; then, for a steady period, the workers' CPU and RSS,
Hubs closed as silent (peer reconnects), and `/list`, `/instances`, `/sequences` latency
(each answered by one worker, with the other's Hubs fetched from it).

Usage: python -m bench.workers_scale [--hubs N] [--steady S]   (default 10000, 600;
needs PostgreSQL in BENCH_POSTGRES_URL or MANAGER_TEST_POSTGRES_URL, emptied)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.harness import Manager, cpu_seconds, rss_kib
from bench.scale import PeerGroup, latency, proof_pool, raise_nofile
from manager.db import audit, migrate

POOL = 500
# What a worker logs when it closes or refuses a Hub, or falls behind.
WHY = ("no LOAD", "id connected on another replica", "id already connected", "behind",
       "lost its lease", "did not answer")  # fmt: skip
SAMPLE_S = 30.0


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def usage(pids: list[int]) -> tuple[float, int]:
    return sum(cpu_seconds(p) for p in pids), sum(rss_kib(p) for p in pids)


async def admissions_since(url: str, since_ms: int) -> int:
    """Hub admissions recorded (audit) since then: each is a Hub that lost its tunnel."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            q = text("SELECT count(*) FROM audit_events WHERE op_code = :c AND received_ms > :t")
            found = await conn.execute(q, {"c": audit.HUB_CONNECTED, "t": since_ms})
            return int(found.scalar_one())
    finally:
        await engine.dispose()


def active(client: httpx.Client, url: str) -> int:
    try:
        resp = client.get(url)
    except httpx.HTTPError:
        return -1
    if resp.status_code != 200:
        return -1
    return sum(1 for h in resp.json() if h["isConnectionActive"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hubs", type=int, default=10_000)
    parser.add_argument("--steady", type=float, default=600.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("MANAGER_TEST_POSTGRES_URL")
    if not url:
        sys.exit("needs PostgreSQL: set BENCH_POSTGRES_URL (its database is emptied)")
    nofile = raise_nofile()
    migrate.downgrade(url, "base")
    manager = Manager(env={"MANAGER_PEER_SECRET": "bench"}, args=("--workers", str(args.workers)),
                      database_url=url)  # fmt: skip
    peers = PeerGroup(Path(tempfile.mkdtemp(prefix="bench-workers-")))
    try:
        manager.start()
        assert manager.proc is not None
        time.sleep(3)  # the second worker registers
        pids = workers_of(manager.proc.pid) if args.workers > 1 else [manager.proc.pid]
        key = manager.new_key()
        proofs = peers.dir / "proofs.json"
        proofs.write_text(json.dumps(proof_pool(key, POOL)))
        _, rss_empty = usage(pids)
        client = httpx.Client(headers=manager.headers, timeout=60)
        list_url = manager.space_url("list")
        t0 = time.monotonic()
        peers.start(manager, key, proofs, args.hubs)
        connected = 0
        while time.monotonic() - t0 < 180:
            time.sleep(2)
            connected = active(client, list_url)
            if connected >= args.hubs:
                break
        joined_s = time.monotonic() - t0
        cpu0, _ = usage(pids)
        start = time.monotonic()
        start_ms = int(time.time() * 1000)
        lists = []
        while time.monotonic() - start < args.steady:
            time.sleep(min(SAMPLE_S, max(0.0, args.steady - (time.monotonic() - start))))
            lists.append(active(client, list_url))
        cpu1, rss = usage(pids)
        steady_s = time.monotonic() - start
        reconnects = asyncio.run(admissions_since(url, start_ms))
        lat = {p: latency(client, manager.space_url(p)) for p in ("list", "instances", "sequences")}
        per_hub = (rss - rss_empty) / max(1, connected)
        print(f"| {args.workers} worker(s), PostgreSQL | measured |")
        print("|---|---|")
        print(f"| Hubs connected | {connected:,} of {args.hubs:,} in {joined_s:.0f} s |")
        print(f"| active in /list during the steady period (every {SAMPLE_S:.0f} s) | "
              f"min {min(lists):,}, max {max(lists):,} |")  # fmt: skip
        print(f"| Hubs admitted again (closed and back) during {steady_s:.0f} s | {reconnects} |")
        print(f"| workers' CPU, steady (% of one core, both together) | "
              f"{(cpu1 - cpu0) / steady_s * 100:.0f} % |")  # fmt: skip
        print(f"| workers' RSS / per Hub | {rss / 1024:.0f} MiB / {per_hub:.0f} KiB |")
        for path, result in lat.items():
            print(f"| `/{path}` p50 / p99 | {result.cell()} |")
        print(f"> {args.hubs:,} Node-peer Hubs in {len(peers.procs)} processes, LOAD every 5 s, "
              f"{POOL} distinct key proofs; open files limit {nofile}.")  # fmt: skip
        why = Counter(
            reason
            for line in (manager.dir / "stderr").read_text(errors="replace").splitlines()
            for reason in WHY
            if reason in line
        )
        print(f"> the workers' warnings, by kind: {dict(why) or 'none'}")
    finally:
        peers.stop()
        manager.cleanup()


if __name__ == "__main__":
    main()
