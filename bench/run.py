"""`make bench`: runs the benchmarks in one go and writes BENCHMARKS.md with the machine,
date and commit. Each part prints markdown table rows (and `> ` notes); this collects them,
adds goal columns to the parts that predate the goals, and puts every goal with its result
in one table at the top, so a regression is one glance away."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# BENCH_HUBS="1000 10000" make bench: other Hub counts for the scale part
HUB_COUNTS = os.environ.get("BENCH_HUBS", "1000 5000 10000").split()
# (title, arguments of `python`, seconds before the part is stopped)
PARTS: list[tuple[str, list[str], float]] = [
    ("Proxied GET vs the framework's ceiling (wrk, real STH)", ["-m", "bench.wrk_ceiling"], 300),
    ("Memory over 1,000,000 proxied requests", ["-m", "bench.proxy_memory"], 900),
    ("Proxy vs direct (small GETs, 1 GiB each way)", ["-m", "bench.proxy_throughput"], 300),
    ("WebSocket vs CONNECT tunnels", ["-m", "bench.ws_vs_connect"], 300),
    ("Isolation: a stalled stream beside a fast one", ["-m", "bench.isolation"], 180),
    (
        "Idle Hubs, restart storm and aggregation",
        ["-m", "bench.scale", *HUB_COUNTS],
        1200,
    ),
]
GOAL_ADDED_P50_MS = 1.0
GOAL_RPS_RATIO = 0.5
GOAL_DOWNLOAD_RATIO = 0.5
GOAL_DOWNLOAD_MBS = 200.0

Cells = list[str]


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+(?:\.\d+)?", cell)]


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def goal_for(measure: str) -> tuple[str, Callable[[float, float], bool]] | None:
    """The goal of an older part's row, as text and as a test of (direct, proxied)."""
    if measure.startswith("GET /version, concurrency 1: p50"):
        return f"added p50 ≤ {GOAL_ADDED_P50_MS:g} ms", lambda d, p: p - d <= GOAL_ADDED_P50_MS
    if measure.startswith("GET /version") and measure.endswith("requests/s"):
        return f"≥ {GOAL_RPS_RATIO:g}× direct", lambda d, p: p >= GOAL_RPS_RATIO * d
    if measure.startswith("download"):
        return (
            f"≥ {GOAL_DOWNLOAD_RATIO:g}× direct and ≥ {GOAL_DOWNLOAD_MBS:.0f} MB/s",
            lambda d, p: p >= GOAL_DOWNLOAD_RATIO * d and p >= GOAL_DOWNLOAD_MBS,
        )
    return None


def add_goals(table: list[str]) -> list[str]:
    """Goal and met? columns for the throughput tables, judged on every proxied column
    (the CONNECT tunnel, and the WebSocket tunnel where the table has one)."""
    if not table or "goal" in table[0]:
        return table
    head = [c.strip() for c in table[0].strip("|").split("|")]
    proxied = [i for i, c in enumerate(head) if "manager" in c]
    out = [table[0] + " goal | met? |", table[1] + "---|---|"]
    for line in table[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        goal = goal_for(cells[0])
        if goal is None or not proxied:
            out.append(line + "  |  |")
            continue
        text, test = goal
        direct = numbers(cells[1])[0]
        results = []
        for i in proxied:
            ok = test(direct, numbers(cells[i])[0])
            tunnel = "WS" if "WebSocket" in head[i] else "CONNECT"
            results.append(f"{tunnel} {verdict(ok)}" if len(proxied) > 1 else verdict(ok))
        out.append(f"{line} {text} | {', '.join(results)} |")
    return out


def goal_rows(title: str, table: list[str]) -> list[str]:
    """Rows with a goal, reduced to part | measure | result | goal | met?."""
    rows = []
    for line in table[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[-2]:
            continue
        result = " · ".join(re.sub(r"\s*\(.*?\)", "", c) for c in cells[1:-2] if c)
        rows.append(f"| {title} | {cells[0]} | {result} | {cells[-2]} | {cells[-1]} |")
    return rows


def run_part(args: list[str], timeout: float) -> tuple[int, str, str]:
    """In its own process group, so a part that hangs or dies is cleaned up with every
    manager and Hub peer it started."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc)
        out, err = proc.communicate()
        return -1, out, f"stopped after {timeout:.0f} s"
    finally:
        stop_group(proc)
    return proc.returncode, out, err


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM first (the parts then remove their temporary files), SIGKILL for what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, or the group never looks empty
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Stopped from outside: still stop the running part's process group (finally above)."""
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    started = time.monotonic()
    details: list[str] = []
    goals = ["| part | measure | result | goal | met? |", "|---|---|---|---|---|"]
    for title, args, timeout in PARTS:
        print(f"## {title}", flush=True)
        t0 = time.monotonic()
        code, out, err = run_part(args, timeout)
        took = time.monotonic() - t0
        lines = out.splitlines()
        table = add_goals([line for line in lines if line.startswith("|")])
        notes = [line for line in lines if line.startswith("> ")]
        if code != 0 or not table:
            last = (err.strip().splitlines() or ["no output"])[-1]
            table = [f"(failed after {took:.0f} s: {last})"]
        goals += goal_rows(title, table)
        print("\n".join([*table, *notes, f"({took:.0f} s)"]), flush=True)
        details += [f"## {title}", "", f"Took {took:.0f} s.", "", *table, ""]
        if notes:
            details += [*notes, ""]
    total = time.monotonic() - started
    print("## Goals", "\n".join(goals), f"total {total / 60:.1f} min", sep="\n", flush=True)
    lines = [
        "# Benchmarks",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: {commit}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"- `make bench` took {total / 60:.1f} min",
        "",
        "## Goals",
        "",
        *goals,
        "",
        *details,
    ]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))
    print(f"written to {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
