"""Idle Hubs: N tunnels (many Node peers per process, LOAD every 5 s) on one manager.

Prints manager RSS per Hub, CPU while idle and the time until all are healthy in /list.
Usage: python -m bench.idle_tunnels [N ...]   (default 1000)
"""

from __future__ import annotations

import sys
import time

from bench.harness import Manager, cpu_seconds, rss_kib, start_peers, stop_peers, wait_event


def run(count: int) -> dict[str, float]:
    manager = Manager()
    manager.start()
    try:
        key = manager.new_key()
        assert manager.proc is not None
        pid = manager.proc.pid
        time.sleep(1)
        base_rss = rss_kib(pid)
        started = time.monotonic()
        peers = start_peers(
            manager,
            key,
            "--count",
            str(count),
            "--id",
            "idle",
            "--same-proof",
            "--quiet",
            "--load-interval",
            "5000",
        )
        try:
            wait_event(peers, "ready", 600)
            while True:
                hubs = manager.get(f"/api/v1/space/{manager.space}/api/v1/list")
                healthy = sum(1 for h in hubs if h["healthy"])
                if healthy >= count:
                    break
                time.sleep(0.5)
            connect_s = time.monotonic() - started
            time.sleep(10)  # let start-up garbage settle
            rss = rss_kib(pid)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(20)
            cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            t1 = time.monotonic()
            manager.get(f"/api/v1/space/{manager.space}/api/v1/list")
            list_ms = (time.monotonic() - t1) * 1000
        finally:
            stop_peers(peers)
        return {
            "hubs": count,
            "connect_s": connect_s,
            "rss_base_mib": base_rss / 1024,
            "rss_mib": rss / 1024,
            "kib_per_hub": (rss - base_rss) / count,
            "idle_cpu_pct": cpu * 100,
            "list_ms": list_ms,
        }
    finally:
        manager.cleanup()


def main(argv: list[str]) -> None:
    counts = [int(a) for a in argv] or [1000]
    print(
        "| Hubs | all healthy after | manager RSS (base → with Hubs) | per Hub | idle CPU | /list |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        r = run(n)
        print(
            f"| {n} | {r['connect_s']:.1f} s | {r['rss_base_mib']:.0f} → {r['rss_mib']:.0f} MiB "
            f"| {r['kib_per_hub']:.0f} KiB | {r['idle_cpu_pct']:.1f} % | {r['list_ms']:.0f} ms |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
