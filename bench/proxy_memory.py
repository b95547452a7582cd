"""Memory under a long stream of proxied requests: the manager's RSS after the first 10,000
proxied GETs and after 1,000,000 (the fast-path issue's goal: within 5 %).

The real STH 1.0.1 behind the manager, `wrk -t1 -c16` against `GET /api/v1/version`, run in
slices until each count is passed; RSS from /proc. A leak of even 50 bytes per request
(an audit row kept, a channel or a timer never freed) shows as +48 MiB here.

Usage: python -m bench.proxy_memory [--requests N]   (needs `wrk` and ../shared/sth)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.harness import Manager, free_port, stop_peers
from bench.wrk_ceiling import wait_ok, wrk, wrk_and_sth
from tests.interop.sth import hub_argv

FIRST = 10_000
GOAL_GROWTH = 0.05
CONCURRENCY = 16


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    args = parser.parse_args()
    dist = wrk_and_sth()
    scratch = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    manager = Manager()
    hub: subprocess.Popen[bytes] | None = None
    try:
        manager.start()
        key = manager.new_key()
        org = manager.space.rsplit("-", 1)[0]
        argv = hub_argv(
            dist, scratch / "hub", free_port(), platform_api=manager.url,
            platform_space=f"{org}:{manager.space}", key=key, hub_id="bench",
        )  # fmt: skip
        with (scratch / "hub.log").open("wb") as log:
            hub = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        url = manager.space_url("sth/bench/api/v1/version")
        wait_ok(url, manager.token)
        assert manager.proc is not None
        pid = manager.proc.pid
        done, started = 0, time.monotonic()
        marks: list[tuple[int, float]] = []
        for target in (FIRST, args.requests):
            while done < target:
                rate = done / (time.monotonic() - started) if done else 3000.0
                seconds = max(2, min(30, int((target - done) / rate) + 1))
                done += int(wrk(url, CONCURRENCY, seconds, manager.token)["n"])
            time.sleep(2)  # the audit writer's last batch, and a collection or two
            marks.append((done, rss_mib(pid)))
        (n0, first), (n1, last) = marks
        growth = last / first - 1
        met = "yes" if growth <= GOAL_GROWTH else "**no**"
        print("| proxied GETs (wrk -c16, real STH) | manager RSS | goal | met? |")
        print("|---|---|---|---|")
        print(f"| after {n0:,} | {first:.1f} MiB | | |")
        print(
            f"| after {n1:,} | {last:.1f} MiB ({growth:+.1%}) | "
            f"within {GOAL_GROWTH:.0%} of the first | {met} |"
        )
        took = time.monotonic() - started
        print(f"> {n1:,} requests in {took:.0f} s; RSS from /proc/<pid>/status.")
    finally:
        if hub is not None:
            stop_peers(hub)
        manager.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
