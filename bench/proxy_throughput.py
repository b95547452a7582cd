"""Proxied vs direct, in one run against the same Hub peer: small GETs (latency, requests/s
at concurrency 1 and 64) and 1 GiB download and upload (MB/s, manager peak RSS).

The peer is the Node Hub peer (real bpmux); "direct" is its own HTTP port, "proxied" goes
client → manager → CONNECT tunnel → peer. Usage: python -m bench.proxy_throughput [--gib N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import AsyncIterator

import httpx

from bench.harness import Manager, free_port, rss_kib, start_peers, stop_peers, wait_event

MiB = 1 << 20


class PeakRss:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def small_gets(
    client: httpx.AsyncClient, url: str, total: int, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            t0 = time.perf_counter()
            resp = await client.get(url)
            latencies.append(time.perf_counter() - t0)
            assert resp.status_code == 200, resp.text

    for _ in range(min(20, total)):  # warm the pools
        await client.get(url)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "rps": total / elapsed,
    }


async def download(client: httpx.AsyncClient, url: str, size: int) -> float:
    got = 0
    started = time.perf_counter()
    async with client.stream("GET", url) as resp:
        assert resp.status_code == 200
        async for chunk in resp.aiter_raw(1 << 20):
            got += len(chunk)
    assert got == size, (got, size)
    return size / (time.perf_counter() - started) / MiB


async def upload(client: httpx.AsyncClient, url: str, size: int) -> float:
    block = b"u" * MiB

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // MiB):
            yield block

    started = time.perf_counter()
    resp = await client.post(url, content=body(), headers={"content-length": str(size)})
    assert resp.status_code == 200 and resp.json()["bytes"] == size, resp.text
    return size / (time.perf_counter() - started) / MiB


async def measure(manager: Manager, direct_port: int, size: int) -> list[tuple[str, str, str, str]]:
    assert manager.proc is not None
    proxied = manager.space_url("sth/bench/api/v1")
    direct = f"http://127.0.0.1:{direct_port}/api/v1"
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    rows: list[tuple[str, str, str, str]] = []
    async with httpx.AsyncClient(headers=manager.headers, timeout=600, limits=limits) as client:
        for conc, total in ((1, 2000), (64, 6000)):
            d = await small_gets(client, f"{direct}/version", total, conc)
            p = await small_gets(client, f"{proxied}/version", total, conc)
            rows.append(
                (
                    f"GET /version, concurrency {conc}: p50 / p99",
                    f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} ms",
                    f"{p['p50_ms']:.2f} / {p['p99_ms']:.2f} ms",
                    f"+{p['p50_ms'] - d['p50_ms']:.2f} ms p50",
                )
            )
            rows.append(
                (
                    f"GET /version, concurrency {conc}: requests/s",
                    f"{d['rps']:.0f}",
                    f"{p['rps']:.0f}",
                    f"{p['rps'] / d['rps']:.2f}x",
                )
            )
        label = f"{size // MiB} MiB"
        d = await download(client, f"{direct}/echo/bytes/{size}", size)
        with PeakRss(manager.proc.pid) as peak:
            p = await download(client, f"{proxied}/echo/bytes/{size}", size)
        rows.append(
            (
                f"download {label}",
                f"{d:.0f} MB/s",
                f"{p:.0f} MB/s (manager peak RSS {peak.peak / 1024:.0f} MiB)",
                f"{p / d:.2f}x",
            )
        )
        d = await upload(client, f"{direct}/echo/count", size)
        with PeakRss(manager.proc.pid) as peak:
            p = await upload(client, f"{proxied}/echo/count", size)
        rows.append(
            (
                f"upload {label}",
                f"{d:.0f} MB/s",
                f"{p:.0f} MB/s (manager peak RSS {peak.peak / 1024:.0f} MiB)",
                f"{p / d:.2f}x",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0, help="transfer size in GiB")
    args = parser.parse_args()
    size = int(args.gib * 1024) * MiB
    manager = Manager()
    manager.start()
    direct_port = free_port()
    peers = start_peers(manager, manager.new_key(), "--id", "bench", "--listen", str(direct_port))
    try:
        wait_event(peers, "control_opened", 30)
        time.sleep(0.5)
        rows = asyncio.run(measure(manager, direct_port, size))
    finally:
        stop_peers(peers)
        manager.cleanup()
    print("| measure | direct to the Hub peer | through manager + CONNECT tunnel | ratio |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
