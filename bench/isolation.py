"""Isolation of streams sharing one Hub tunnel: a consumer that stops reading must cost the
other streams neither speed nor manager memory.

Stream A downloads an endless body from the Hub peer through the manager and stalls: its
client reads 1 MiB, then keeps the socket open without reading. Stream B downloads from the
same Hub as fast as it can. If the manager held A's bytes instead of pushing back on the
Hub (BPMux window), its memory would grow with B's transfer; if A's stall blocked the shared
tunnel, B would slow down or stop. B alone and B beside a stalled A alternate, so drift on
a busy machine hits both. Usage: python -m bench.isolation [--mib N] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import statistics
import time
from urllib.parse import urlsplit

import httpx

from bench.harness import Manager, rss_kib, start_peers, stop_peers, wait_event
from bench.proxy_throughput import PeakRss, download

MiB = 1 << 20
ENDLESS = 1 << 40  # far more than a stalled reader will ever take
GOAL_COST = 0.10
GOAL_RSS_MIB = 16.0


class StalledReader:
    """A raw HTTP client that reads the head and a little of the body, then stops reading:
    whatever the manager sends after that piles up in kernel buffers, then in the manager
    unless it pushes back."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80))
        head = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        self.received = 0

    def read(self, n: int) -> None:
        while self.received < n:
            chunk = self.sock.recv(min(1 << 16, n - self.received))
            if not chunk:
                raise ConnectionError("stalled stream closed before it stalled")
            self.received += len(chunk)

    def close(self) -> None:
        self.sock.close()


async def measure(manager: Manager, size: int, rounds: int) -> dict[str, float]:
    assert manager.proc is not None
    pid = manager.proc.pid
    base = manager.space_url("sth/iso/api/v1/echo/bytes")
    alone: list[float] = []
    beside: list[float] = []
    rss_alone = rss_stalled = 0
    async with httpx.AsyncClient(headers=manager.headers, timeout=60) as client:
        await download(client, f"{base}/{16 * MiB}", 16 * MiB)  # warm up
        for _ in range(rounds):
            with PeakRss(pid) as peak:
                alone.append(await download(client, f"{base}/{size}", size))
            rss_alone = max(rss_alone, peak.peak)
            stalled = StalledReader(f"{base}/{ENDLESS}", manager.headers)
            try:
                stalled.read(MiB)
                with PeakRss(pid) as peak:
                    await asyncio.sleep(1.0)  # let every buffer on A's path fill
                    beside.append(await download(client, f"{base}/{size}", size))
                rss_stalled = max(rss_stalled, peak.peak, rss_kib(pid))
            finally:
                stalled.close()
    b_alone, b_beside = statistics.median(alone), statistics.median(beside)
    return {
        "alone": b_alone,
        "beside": b_beside,
        "cost": 1 - b_beside / b_alone,
        "rss_alone_mib": rss_alone / 1024,
        "rss_stalled_mib": rss_stalled / 1024,
    }


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """`make bench` stops a part that overruns with SIGTERM: clean up as on an error."""
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512, help="size of each download of B")
    parser.add_argument("--rounds", type=int, default=3, help="B alone / B beside A pairs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    manager = Manager()
    manager.start()
    peers = start_peers(manager, manager.new_key(), "--id", "iso")
    try:
        wait_event(peers, "control_opened", 30)
        time.sleep(0.5)
        r = asyncio.run(measure(manager, args.mib * MiB, args.rounds))
    finally:
        stop_peers(peers)
        manager.cleanup()
    cost_ok = r["cost"] < GOAL_COST
    rss_ok = r["rss_stalled_mib"] - r["rss_alone_mib"] <= GOAL_RSS_MIB
    label = f"{args.mib} MiB, median of {args.rounds}"
    print("| measure | result | goal | met? |")
    print("|---|---:|---|---|")
    print(f"| stream B alone ({label}) | {r['alone']:.0f} MB/s | | |")
    print(
        f"| stream B while stream A of the same Hub is stalled | {r['beside']:.0f} MB/s "
        f"(costs {r['cost'] * 100:.1f} %) | costs B < {GOAL_COST * 100:.0f} % "
        f"| {'yes' if cost_ok else '**no**'} |"
    )
    print(
        f"| manager peak RSS: B alone → B beside stalled A | {r['rss_alone_mib']:.0f} → "
        f"{r['rss_stalled_mib']:.0f} MiB | bounded: ≤ +{GOAL_RSS_MIB:.0f} MiB "
        f"| {'yes' if rss_ok else '**no**'} |"
    )


if __name__ == "__main__":
    main()
