"""`make bench`: runs the benchmarks in one go and writes BENCHMARKS.md with the machine,
date and commit. Each part prints a markdown table; this collects them."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = [
    ("Proxy vs direct (small GETs, 1 GiB each way)", ["-m", "bench.proxy_throughput"]),
    ("WebSocket vs CONNECT tunnels", ["-m", "bench.ws_vs_connect"]),
    ("Idle Hubs", ["-m", "bench.idle_tunnels", "1000"]),
]


def main() -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Benchmarks",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: {commit}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "",
    ]
    for title, args in PARTS:
        print(f"## {title}", flush=True)
        out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
        table = [line for line in out.stdout.splitlines() if line.startswith("|")]
        if out.returncode != 0 or not table:
            table = [f"(failed: {out.stderr.strip().splitlines()[-1:]})"]
        print("\n".join(table), flush=True)
        lines += [f"## {title}", "", *table, ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    print(f"written to {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
