"""Two replicas on one PostgreSQL: what forwarding to the replica holding a Hub costs.

The same Hub asked through the replica holding its tunnel (A) and through the other one
(B), which forwards to A's peer route: small GETs with `wrk` (the real STH 1.0.1's
`/api/v1/version`, c=1 and c=16) and a 256 MiB download from a Node-peer Hub (curl, to
/dev/null). Goals (the scale-out issue): ≤ 1 ms added p50, ≥ 0.8× the stream throughput.

Usage: python -m bench.replicas   (needs wrk, curl, ../shared/sth, and a PostgreSQL URL in
BENCH_POSTGRES_URL or MANAGER_TEST_POSTGRES_URL; its database is emptied)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import Manager, free_port, start_peers, stop_peers, wait_event
from bench.wrk_ceiling import wait_ok, wrk
from manager.db import migrate
from tests.interop.sth import _install, hub_argv

SECONDS = int(os.environ.get("BENCH_WRK_S", "10"))
DOWNLOAD = 256 * 1024 * 1024
GOAL_ADDED_P50_MS = 1.0
GOAL_STREAM_RATIO = 0.8
PEER_SECRET = "bench-peer-secret"
HOLDER = "replica A (holds the tunnel)"
FORWARDER = "replica B (forwards to A)"


def replica(url: str, name: str) -> Manager:
    peer = free_port()
    return Manager(
        env={
            "MANAGER_REPLICA_ID": name,
            "MANAGER_PEER_PORT": str(peer),
            "MANAGER_PEER_URL": f"http://127.0.0.1:{peer}",
            "MANAGER_PEER_SECRET": PEER_SECRET,
            "MANAGER_SECRET": "bench-replicas-server-secret-0123456789",
        },
        database_url=url,
    )


def download_mbs(url: str, token: str) -> float:
    out = subprocess.run(
        [
            *("curl", "-sS", "-o", "/dev/null", "-w", "%{speed_download} %{size_download}"),
            *("-H", f"Authorization: Bearer {token}", url),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(out[1]) == DOWNLOAD, out
    return float(out[0]) / 1e6


def main() -> None:
    url = os.environ.get("BENCH_POSTGRES_URL") or os.environ.get("MANAGER_TEST_POSTGRES_URL")
    if not url:
        sys.exit("needs PostgreSQL: set BENCH_POSTGRES_URL (its database is emptied)")
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    dist = _install()
    if isinstance(dist, str):
        sys.exit(f"no STH 1.0.1: {dist}")
    migrate.downgrade(url, "base")
    scratch = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    a, b = replica(url, "a"), replica(url, "b")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        a.start()
        b.token, b.space = a.token, a.space
        b.start()
        key = a.new_key()
        hub_port = free_port()
        org = a.space.rsplit("-", 1)[0]
        argv = hub_argv(
            dist, scratch / "hub", hub_port, platform_api=a.url,
            platform_space=f"{org}:{a.space}", key=key, hub_id="bench",
        )  # fmt: skip
        with (scratch / "hub.log").open("wb") as log:
            procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        peers = start_peers(a, key, "--id", "dl")  # joins A: its URL is the one given
        procs.append(peers)
        wait_event(peers, "control_opened", 30)
        via_a = a.space_url("sth/bench/api/v1/version")
        via_b = b.space_url("sth/bench/api/v1/version")
        wait_ok(via_a, a.token)
        wait_ok(via_b, b.token)
        wait_ok(b.space_url("sth/dl/api/v1/version"), b.token)
        direct = f"http://127.0.0.1:{hub_port}/api/v1/version"

        print(
            "| through | requests/s c=1 | p50 / p99 ms c=1 | requests/s c=16 | p50 / p99 ms c=16 |"
        )
        print("|---|---|---|---|---|")
        rows = {}
        for label, target, token in (
            ("the Hub directly", direct, ""),
            (HOLDER, via_a, a.token),
            (FORWARDER, via_b, b.token),
        ):
            one, sixteen = wrk(target, 1, SECONDS, token), wrk(target, 16, SECONDS, token)
            rows[label] = (one, sixteen)
            print(
                f"| {label} | {one['rps']:.0f} | {one['p50']:.2f} / {one['p99']:.2f} | "
                f"{sixteen['rps']:.0f} | {sixteen['p50']:.2f} / {sixteen['p99']:.2f} |"
            )
        path = f"sth/dl/api/v1/echo/bytes/{DOWNLOAD}"
        down_a = max(download_mbs(a.space_url(path), a.token) for _ in range(3))
        down_b = max(download_mbs(b.space_url(path), b.token) for _ in range(3))
        added = (
            rows["replica B (forwards to A)"][0]["p50"]
            - rows["replica A (holds the tunnel)"][0]["p50"]
        )
        ratio = down_b / down_a
        print()
        print("| goal | measured | met? |")
        print("|---|---|---|")
        print(
            f"| forwarding adds ≤ {GOAL_ADDED_P50_MS:g} ms p50 (c=1, small GET) | "
            f"{added:.2f} ms | {'yes' if added <= GOAL_ADDED_P50_MS else '**no**'} |"
        )
        print(
            f"| forwarded download ≥ {GOAL_STREAM_RATIO:g}× the holder's | "
            f"{down_b:.0f} vs {down_a:.0f} MB/s ({ratio:.2f}×) | "
            f"{'yes' if ratio >= GOAL_STREAM_RATIO else '**no**'} |"
        )
        print(
            f"> wrk -t1, {SECONDS} s per run; downloads: {DOWNLOAD >> 20} MiB with curl, best of 3."
            " Both replicas, the Hubs and the clients share this machine's cores."
        )
    finally:
        for proc in procs:
            stop_peers(proc)
        b.cleanup()
        a.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
