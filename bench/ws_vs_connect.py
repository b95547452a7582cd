"""WebSocket tunnel (space-manager connect) vs CONNECT tunnel vs direct, in one run, against
the very same Hub server: small GETs and 1 GiB download and upload (MB/s, ratios).

One Node Hub peer (real bpmux) joins the manager directly with CONNECT as `peer` and also
serves its Hub API on a local port (`--listen`); `space-manager connect` in front of that
port joins the same server again as `ws-peer` over a WebSocket. So the three columns differ
only in the path: client → peer; client → manager → CONNECT → peer; client → manager →
WebSocket → connector → TCP → peer. Usage: python -m bench.ws_vs_connect [--gib N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time

import httpx

from bench.harness import BIN, Manager, cpu_seconds, free_port, start_peers, stop_peers, wait_event
from bench.proxy_throughput import PeakRss, download, small_gets, upload

MiB = 1 << 20
Row = tuple[str, ...]


def start_connector(manager: Manager, key: str, hub_port: int) -> subprocess.Popen[bytes]:
    org = manager.space.rsplit("-", 1)[0]
    return subprocess.Popen(
        [
            str(BIN),
            "connect",
            "--hub",
            f"http://127.0.0.1:{hub_port}",
            "--platform-api",
            manager.url,
            "--platform-space",
            f"{org}:{manager.space}",
            "--id",
            "ws-peer",
            "--log-level",
            "warning",
        ],
        env={**os.environ, "PLATFORM_API_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_healthy(manager: Manager, hub_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hubs = manager.get(f"/api/v1/space/{manager.space}/api/v1/list")
        if any(h["id"] == hub_id and h["healthy"] for h in hubs):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{hub_id} not healthy")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


async def measure(manager: Manager, direct_port: int, connector_pid: int, size: int) -> list[Row]:
    paths = {
        "direct": f"http://127.0.0.1:{direct_port}/api/v1",
        "connect": manager.space_url("sth/peer/api/v1"),
        "ws": manager.space_url("sth/ws-peer/api/v1"),
    }
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    rows: list[Row] = []
    async with httpx.AsyncClient(headers=manager.headers, timeout=900, limits=limits) as client:
        for conc, total in ((1, 1000), (64, 4000)):
            r = {k: await small_gets(client, f"{u}/version", total, conc) for k, u in paths.items()}
            rows.append(
                (
                    f"GET /version, concurrency {conc}: p50",
                    *(f"{r[k]['p50_ms']:.2f} ms" for k in paths),
                    ratio(r["ws"]["p50_ms"], r["connect"]["p50_ms"]),
                    ratio(r["ws"]["p50_ms"], r["direct"]["p50_ms"]),
                )
            )
            rows.append(
                (
                    f"GET /version, concurrency {conc}: requests/s",
                    *(f"{r[k]['rps']:.0f}" for k in paths),
                    ratio(r["ws"]["rps"], r["connect"]["rps"]),
                    ratio(r["ws"]["rps"], r["direct"]["rps"]),
                )
            )
        label = f"{size // MiB} MiB"
        for name, run, path in (
            (f"download {label}", download, "echo/bytes/" + str(size)),
            (f"upload {label}", upload, "echo/count"),
        ):
            speeds: dict[str, float] = {}
            extra = ""
            for k, base in paths.items():
                cpu0 = cpu_seconds(connector_pid)
                with PeakRss(connector_pid) as peak:
                    speeds[k] = await run(client, f"{base}/{path}", size)
                if k == "ws":
                    extra = (
                        f" (connector: peak RSS {peak.peak / 1024:.0f} MiB, "
                        f"{cpu_seconds(connector_pid) - cpu0:.1f} s CPU)"
                    )
            rows.append(
                (
                    name,
                    f"{speeds['direct']:.0f} MB/s",
                    f"{speeds['connect']:.0f} MB/s",
                    f"{speeds['ws']:.0f} MB/s{extra}",
                    ratio(speeds["ws"], speeds["connect"]),
                    ratio(speeds["ws"], speeds["direct"]),
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
    peers = start_peers(manager, manager.new_key(), "--id", "peer", "--listen", str(direct_port))
    connector: subprocess.Popen[bytes] | None = None
    try:
        wait_event(peers, "control_opened", 30)
        connector = start_connector(manager, manager.new_key(), direct_port)
        wait_healthy(manager, "peer")
        wait_healthy(manager, "ws-peer")
        rows = asyncio.run(measure(manager, direct_port, connector.pid, size))
    finally:
        if connector is not None:
            connector.terminate()
            connector.wait(10)
        stop_peers(peers)
        manager.cleanup()
    print(
        "| measure | direct to the Hub peer | manager + CONNECT tunnel "
        "| manager + WebSocket tunnel (connector) | WS / CONNECT | WS / direct |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
