"""Many idle Hubs on one manager: connect, memory, idle CPU, Space aggregation latency, and a
reconnect storm after a manager restart, in one flow per Hub count.

The storm is judged by how it settles, too: Hub connects per second after the restart, the
busiest second against the mean (from the audit's connect records, stamped as each Hub
registers). A herd that never settles (Hubs closed as silent while the loop is swamped,
reconnecting, swamping it again) shows as a peak far above a mean stretched by the tail.

Real Hubs each prove their key with a different scrypt proof, and the manager's cost of
admitting them is mostly those proofs; peers sharing one proof would hide it. So a pool of
distinct proofs is made up front (in parallel, outside the manager) and dealt to the peers
round-robin: the manager sees as many distinct proofs as the pool holds.

All counts start from the same pristine data dir (one org, Space, admin token and access
key), so one proof pool serves every count and each count starts from an empty Hub table.
Waits are capped, so a manager that never gets all Hubs in costs `make bench` minutes, not
hours; the table then says how far it got.
Usage: python -m bench.scale [N ...] [--pool P] [--steady S]   (default 1000 5000 10000,
pool 500, no steady part; `make bench-scale` is 10000 --steady 600: the Hubs idle for ten
minutes, CPU, RSS and Hubs closed and admitted again over that span)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import NODE_DIR, Manager, cpu_seconds, rss_kib
from manager.db.audit import HUB_CONNECTED
from manager.hubs.keys import make_proof

PEERS_PER_PROCESS = 2500
LOAD_INTERVAL_MS = 5000
SEEDED_HUBS = 100  # Hubs given one Sequence and one Instance, so aggregation has content
CONNECT_CAP_S = 90.0  # keeps `make bench` under 10 minutes when 10,000 never settle
RESTART_CAP_S = 70.0  # a little over the 60 s goal: enough to see a narrow miss
SHUTDOWN_TIMEOUT_S = 60.0
SETTLE_S = 5.0
IDLE_WINDOW_S = 15.0
# 200 samples, so the p99 is the third-slowest request rather than the slowest of 40 (one
# stray stall decided it: 244.7 ms in one run of 89aedc2, 29.7 ms in the one before).
LATENCY_REQUESTS = 200
LATENCY_BUDGET_S = 12.0
SEED_BUDGET_S = 20.0
REQUEST_TIMEOUT_S = 10.0  # a manager that takes longer has failed that request
ENDPOINTS = ("list", "instances", "sequences")
GOAL_KIB_PER_HUB = 50.0
GOAL_RESTART_S = 60.0
GOAL_STEADY_CPU = 50.0  # % of one core, the manager, while 10,000 Hubs idle
STEADY_SAMPLE_S = 30.0
GOAL_LIST_P99_MS = 100.0
GOAL_PEAK_OVER_MEAN = 3.0  # restart: the busiest second's connects against the storm's mean
GOAL_AT = 10_000


def raise_nofile() -> int:
    """Every tunnel is a socket in the manager and in a peer process; children inherit this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def proof_pool(key: str, size: int) -> list[str]:
    """Distinct proofs for `key`; scrypt is ~35-70 ms each, so spread over every CPU."""
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(make_proof, [key] * size, chunksize=max(1, size // 32)))


def sequence_package() -> bytes:
    """A minimal Sequence: the peer only reads package.json out of it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (
            ("package.json", '{"name":"bench-seq","version":"1.0.0","main":"index.js"}'),
            ("index.js", "module.exports = async function* () {};\n"),
        ):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs: tells a saturated machine from a manager that waits."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@dataclass
class PeerGroup:
    """Hub peer processes; their stdout goes to files so a full pipe can never stall them."""

    dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, manager: Manager, key: str, proofs: Path, count: int) -> None:
        org = manager.space.rsplit("-", 1)[0]
        nproc = math.ceil(count / PEERS_PER_PROCESS)
        for p in range(nproc):
            share = count // nproc + (1 if p < count % nproc else 0)
            args = [
                *("--platform-api", manager.url),
                *("--platform-space", f"{org}:{manager.space}"),
                *("--platform-api-key", key),
                *("--id", f"s{p}", "--count", str(share), "--proofs", str(proofs)),
                *("--quiet", "--load-interval", str(LOAD_INTERVAL_MS), "--tick-ms", "0"),
                # a restart takes seconds; the peers must outlast it, not give up
                *("--reconnection-delay", "1000", "--max-reconnections", "600"),
            ]
            with (
                (self.dir / f"peers-{p}.out").open("wb") as out,
                (self.dir / f"peers-{p}.err").open("wb") as err,
            ):
                self.procs.append(
                    subprocess.Popen(
                        ["node", str(NODE_DIR / "hub-peer.js"), *args],
                        stdin=subprocess.PIPE,  # EOF makes a peer process exit: keep it open
                        stdout=out,
                        stderr=err,
                    )
                )

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def events(self, name: str) -> int:
        needle = f'"event":"{name}"'.encode()
        return sum(path.read_bytes().count(needle) for path in self.dir.glob("peers-*.out"))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdin is not None:
                p.stdin.close()
        self.procs.clear()


class CpuMeter:
    """CPU over a phase: the manager's and the peers' (% of one core), the machine's (% of
    all cores)."""

    def __init__(self, pid: int, peers: PeerGroup) -> None:
        self.pid, self.peers = pid, peers
        self.t0, self.cpu0, self.peers0 = time.monotonic(), cpu_seconds(pid), peers.cpu_seconds()
        self.machine0 = machine_cpu()

    def read(self) -> tuple[float, float, float]:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        busy, total = machine_cpu()
        return (
            (cpu_seconds(self.pid) - self.cpu0) / elapsed * 100,
            (self.peers.cpu_seconds() - self.peers0) / elapsed * 100,
            (busy - self.machine0[0]) / max(total - self.machine0[1], 1e-6) * 100,
        )


@dataclass
class Wait:
    seconds: float | None = None  # None: not all healthy within the cap
    healthy: int = 0  # most healthy seen in /list
    connected: int = 0  # most seen in the manager_hubs_connected gauge
    cpu: tuple[float, float, float] = (0.0, 0.0, 0.0)  # manager, peers, machine


@dataclass
class Latency:
    samples: list[float] = field(default_factory=list)  # ms, sorted
    errors: int = 0

    def cell(self) -> str:
        failed = f"{self.errors} failed or > {REQUEST_TIMEOUT_S:.0f} s"
        if not self.samples:
            return f"- ({failed})" if self.errors else "-"
        text = f"{self.p50:.1f} / {self.p99:.1f} ms"
        return f"{text} ({failed})" if self.errors else text

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return self.samples[min(len(self.samples) - 1, math.ceil(len(self.samples) * 0.99) - 1)]


@dataclass
class Steady:
    """The Hubs left idle for a long while (`--steady S`): does it hold?"""

    seconds: float
    cpu: tuple[float, float, float]
    rss_kib: tuple[int, int]  # at its start and its end
    fewest_healthy: int  # sampled in /list every STEADY_SAMPLE_S
    window_ms: tuple[int, int]
    readmitted: int | None = None  # Hubs connected again inside it (closed, then back)


@dataclass
class Result:
    hubs: int
    connect: Wait = field(default_factory=Wait)
    first_scrypt: float | None = None
    seed_errors: int = 0
    base_kib: int = 0
    rss_kib: int = 0
    rss_hubs: int = 0  # Hubs connected when the RSS was read
    idle_cpu: tuple[float, float, float] | None = None
    latency: dict[str, Latency] = field(default_factory=dict)
    shutdown_s: float | None = None
    restart: Wait | None = None
    restart_metrics: dict[str, float] = field(default_factory=dict)
    restart_rates: tuple[float, float] | None = None  # connects per second: peak, mean
    steady: Steady | None = None
    stderr: list[tuple[int, str]] = field(default_factory=list)
    stderr_errors: int = 0
    stderr_warnings: int = 0
    phases: list[tuple[str, str]] = field(default_factory=list)  # (what, time of day)
    gave_up: int = 0
    wall_s: float = 0.0
    failed: str = ""


def metrics(manager: Manager) -> dict[str, float] | None:
    """Prometheus text from /api/v1/metrics, label sets summed per metric name; {} when the
    manager has no such endpoint, None when it did not answer in time."""
    try:
        resp = httpx.get(
            f"{manager.url}/api/v1/metrics", headers=manager.headers, timeout=REQUEST_TIMEOUT_S
        )
    except httpx.HTTPError:
        return None
    if resp.status_code == 404:
        return {}
    if resp.status_code != 200:
        return None
    out: dict[str, float] = {}
    for line in resp.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        name = name.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def healthy_count(client: httpx.Client, manager: Manager) -> int:
    # slower than a user would wait, but the question here is when all are healthy
    resp = client.get(manager.space_url("list"), timeout=2 * REQUEST_TIMEOUT_S)
    resp.raise_for_status()
    return sum(1 for hub in resp.json() if hub.get("healthy"))


def wait_all_healthy(
    client: httpx.Client, manager: Manager, count: int, meter: CpuMeter, since: float, cap: float
) -> Wait:
    """Until /list shows `count` healthy Hubs, or `cap` s from `since`. While the cheap
    `manager_hubs_connected` gauge says not all are in yet, /list (which costs the manager
    time per Hub) is not asked."""
    wait = Wait()
    deadline = since + cap
    while time.monotonic() < deadline:
        gauge = metrics(manager)
        if gauge is not None:  # None: no answer in time, so /list would not answer either
            connected = gauge.get("manager_hubs_connected")
            wait.connected = max(wait.connected, int(connected or 0))
            if connected is None or connected >= count:
                with contextlib.suppress(httpx.HTTPError):
                    wait.healthy = max(wait.healthy, healthy_count(client, manager))
                if wait.healthy >= count:
                    wait.seconds = time.monotonic() - since
                    break
        time.sleep(1.0)
    wait.cpu = meter.read()
    return wait


def seed(client: httpx.Client, manager: Manager, hubs: int) -> int:
    """One Sequence and one Instance on each of the first `hubs` Hubs, within a time budget;
    returns how many Hubs were not seeded."""
    package = sequence_package()
    deadline = time.monotonic() + SEED_BUDGET_S
    for i in range(hubs):
        if time.monotonic() > deadline:
            return hubs - i
        base = manager.space_url(f"sth/s0-{i}/api/v1")
        try:
            resp = client.post(
                f"{base}/sequence",
                content=package,
                headers={"content-type": "application/octet-stream"},
            )
            resp.raise_for_status()
            seq = resp.json()["id"]
            client.post(f"{base}/sequence/{seq}/start", json={"appConfig": {}}).raise_for_status()
        except (httpx.HTTPError, KeyError, ValueError):
            return hubs - i
    return 0


def latency(client: httpx.Client, url: str) -> Latency:
    """Sequential GETs within a time budget (past it only to reach 5 samples, and not once a
    request failed), so a slow aggregate over 10,000 Hubs cannot eat the whole `make bench`;
    errors are counted, not fatal."""
    out = Latency()
    attempts = 0
    try:
        client.get(url)  # warm the connection
    except httpx.HTTPError:
        out.errors += 1  # not even one answer in time: do not spend the budget waiting
        return out
    deadline = time.monotonic() + LATENCY_BUDGET_S
    while len(out.samples) < LATENCY_REQUESTS:
        if time.monotonic() >= deadline and (attempts >= 5 or out.errors):
            break
        t0 = time.perf_counter()
        try:
            ok = client.get(url).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            out.samples.append((time.perf_counter() - t0) * 1000)
        else:
            out.errors += 1
        attempts += 1
    out.samples.sort()
    return out


def terminate(manager: Manager) -> float:
    """SIGTERM and the seconds until the process is gone (killed after a timeout)."""
    assert manager.proc is not None
    t0 = time.monotonic()
    manager.proc.send_signal(signal.SIGTERM)
    try:
        manager.proc.wait(SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        manager.proc.kill()
        manager.proc.wait()
    manager.proc = None
    return time.monotonic() - t0


_LOG_LINE = re.compile(r"\b(ERROR|WARNING|CRITICAL)\b:?\s+(.*)$")
_HUB = re.compile(r"hub [^\s:]+@[^\s:]+")
_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+(?::\d+)?")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d)")  # a log line's time of day


def scan_stderr(path: Path) -> tuple[int, int, list[tuple[int, str]]]:
    """Error and warning lines of the manager's stderr, grouped by message with Hub ids,
    addresses and numbers masked, most frequent first: what went wrong at scale, briefly.
    Each group says when its first and last lines were logged and the range of its first
    number (say, how many seconds a Hub was silent), to be set against the phases' times."""
    if not path.exists():
        return 0, 0, []
    errors = warnings = 0
    kinds: dict[str, list[Any]] = {}  # kind -> [lines, first logged, last logged, low, high]
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("Traceback"):
            errors += 1
            continue
        found = _LOG_LINE.search(line)
        if found is None:
            continue
        if found.group(1) == "WARNING":
            warnings += 1
        else:
            errors += 1
        message = _HUB.sub("hub <id>", _ADDRESS.sub("<address>", found.group(2)))
        kind = f"{found.group(1)} {_NUMBER.sub('N', message)[:160]}"
        stamp = _STAMP.match(line)
        at = stamp.group(1) if stamp else "?"
        first = _NUMBER.search(message)
        value = float(first.group()) if first else math.nan
        seen = kinds.setdefault(kind, [0, at, at, value, value])
        seen[0] += 1
        seen[2], seen[3], seen[4] = at, min(seen[3], value), max(seen[4], value)
    out = []
    for text, (n, first_at, last_at, low, high) in sorted(kinds.items(), key=lambda k: -k[1][0]):
        span = f" (logged {first_at} to {last_at}" + (
            f"; N from {low:g} to {high:g})" if not math.isnan(low) else ")"
        )
        out.append((n, f"`{text}`{span}"))
    return errors, warnings, out


def run(
    count: int,
    template: Path,
    token: str,
    space: str,
    key: str,
    proofs: Path,
    steady_s: float = 0.0,
) -> Result:
    res = Result(count)
    began = time.monotonic()
    storm: tuple[int, int] | None = None  # the restart's wall-clock window, ms
    # every peer dials from 127.0.0.1: lift the per-address tunnel cap meant for the Internet
    manager = Manager(env={"MANAGER_MAX_TUNNELS_PER_SOURCE": str(count * 2 + 1000)})
    shutil.copytree(template, manager.dir / "data")
    manager.token, manager.space = token, space
    peers = PeerGroup(manager.dir)
    client = httpx.Client(headers=manager.headers, timeout=REQUEST_TIMEOUT_S)
    try:
        manager.start()
        assert manager.proc is not None
        pid = manager.proc.pid
        time.sleep(1)
        res.base_kib = rss_kib(pid)
        started = time.monotonic()
        res.phases.append(("peers started", time.strftime("%H:%M:%S")))
        peers.start(manager, key, proofs, count)
        meter = CpuMeter(pid, peers)
        res.connect = wait_all_healthy(client, manager, count, meter, started, CONNECT_CAP_S)
        res.first_scrypt = (metrics(manager) or {}).get("manager_scrypt_runs_total")
        res.seed_errors = seed(client, manager, min(SEEDED_HUBS, count))
        time.sleep(SETTLE_S)  # let start-up garbage settle
        res.rss_kib = rss_kib(pid)
        res.rss_hubs = int((metrics(manager) or {}).get("manager_hubs_connected", hubs_in(res)))
        meter = CpuMeter(pid, peers)
        with idle_profile(pid, count):
            time.sleep(IDLE_WINDOW_S)
        res.idle_cpu = meter.read()
        for name in ENDPOINTS:
            res.latency[name] = latency(client, manager.space_url(name))
        if steady_s > 0:
            res.phases.append(("idle from", time.strftime("%H:%M:%S")))
            res.steady = hold_steady(client, manager, pid, peers, steady_s)
        res.phases.append(("SIGTERM", time.strftime("%H:%M:%S")))

        res.shutdown_s = terminate(manager)
        client.close()
        client = httpx.Client(headers=manager.headers, timeout=REQUEST_TIMEOUT_S)
        restarted = time.monotonic()
        restarted_ms = int(time.time() * 1000)
        res.phases.append(("restarted", time.strftime("%H:%M:%S")))
        manager.start()  # same data dir and port; the peers find it by themselves
        assert manager.proc is not None
        meter = CpuMeter(manager.proc.pid, peers)
        res.restart = wait_all_healthy(client, manager, count, meter, restarted, RESTART_CAP_S)
        res.restart_metrics = metrics(manager) or {}
        storm = (restarted_ms, int(time.time() * 1000))
    except (RuntimeError, OSError, httpx.HTTPError, AssertionError) as exc:
        res.failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        print(f"scale {count}: {res.failed}", file=sys.stderr, flush=True)
    finally:
        client.close()
        res.gave_up = peers.events("gave_up") + peers.events("abandoned")
        peers.stop()
        manager.stop()
        if storm is not None:
            res.restart_rates = connect_rates(manager.dir / "data" / "manager.db", *storm)
        if res.steady is not None:
            rates = connects_in(manager.dir / "data" / "manager.db", *res.steady.window_ms)
            res.steady.readmitted = rates
        res.stderr_errors, res.stderr_warnings, res.stderr = scan_stderr(manager.dir / "stderr")
        keep = os.environ.get("BENCH_KEEP")
        if keep:
            shutil.copytree(manager.dir, Path(keep) / f"scale-{count}", dirs_exist_ok=True)
        manager.cleanup()
        res.wall_s = time.monotonic() - began
    return res


def hold_steady(
    client: httpx.Client, manager: Manager, pid: int, peers: PeerGroup, seconds: float
) -> Steady:
    """Leave the Hubs idle for `seconds`, sampling /list; CPU and RSS over the whole span."""
    began_ms, rss0 = int(time.time() * 1000), rss_kib(pid)
    meter = CpuMeter(pid, peers)
    fewest = math.inf
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(STEADY_SAMPLE_S, left))
        try:
            fewest = min(fewest, healthy_count(client, manager))
        except httpx.HTTPError:
            fewest = 0
    return Steady(
        seconds=seconds,
        cpu=meter.read(),
        rss_kib=(rss0, rss_kib(pid)),
        fewest_healthy=int(fewest) if fewest != math.inf else 0,
        window_ms=(began_ms, int(time.time() * 1000)),
    )


def connect_stamps(db: Path, since_ms: int, until_ms: int) -> list[int] | None:
    """When each Hub connect inside the window was recorded (the audit), sorted; None when
    the database cannot be read."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            rows = con.execute(
                "SELECT received_ms FROM audit_events"
                " WHERE op_code = ? AND received_ms BETWEEN ? AND ?",
                (HUB_CONNECTED, since_ms, until_ms),
            ).fetchall()
    except sqlite3.Error as exc:
        print(f"audit connects: {exc}", file=sys.stderr, flush=True)
        return None
    return sorted(int(r[0]) for r in rows)


def connects_in(db: Path, since_ms: int, until_ms: int) -> int | None:
    """Hub connects inside the window: each one a Hub that had been closed (or gave up) and
    came back."""
    stamps = connect_stamps(db, since_ms, until_ms)
    return None if stamps is None else len(stamps)


def connect_rates(db: Path, since_ms: int, until_ms: int) -> tuple[float, float] | None:
    """(peak, mean) Hub connects per second in [since_ms, until_ms], from the audit's connect
    records: the busiest 1-s bin from the first connect on, and the count over the span from
    the first connect to the last (at least 1 s). None without two connects to measure."""
    stamps = connect_stamps(db, since_ms, until_ms) or []
    if len(stamps) < 2:
        return None
    bins = Counter((t - stamps[0]) // 1000 for t in stamps)
    span_s = max((stamps[-1] - stamps[0]) / 1000, 1.0)
    return float(max(bins.values())), len(stamps) / span_s


def rates_cell(rates: tuple[float, float] | None) -> str:
    if rates is None:
        return "-"
    peak, mean = rates
    return f"{peak:.0f} / {mean:.0f} /s ({peak / mean:.1f}×)"


@contextlib.contextmanager
def idle_profile(pid: int, count: int) -> Iterator[None]:
    """With BENCH_PROFILE=DIR, py-spy samples the manager through the idle window into
    DIR/idle-<count>.txt (raw, folded stacks): what an idle Hub costs, by function."""
    out = os.environ.get("BENCH_PROFILE")
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if not out or not spy:
        yield
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    dest = Path(out) / f"idle-{count}.txt"
    cmd = [spy, "record", "-p", str(pid), "-d", str(int(IDLE_WINDOW_S)), "-r", "200", "-f", "raw"]
    proc = subprocess.Popen([*cmd, "-o", str(dest)], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.wait(timeout=IDLE_WINDOW_S + 30)


def prepare(work: Path) -> tuple[Path, str, str, str]:
    """A data dir with an org, Space, admin token and one access key, to copy per count."""
    manager = Manager()
    try:
        manager.start()
        key = manager.new_key()
        manager.stop()
        template = work / "template"
        shutil.copytree(manager.dir / "data", template)
        return template, manager.token, manager.space, key
    finally:
        manager.cleanup()


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def waited(w: Wait | None, total: int, cap: float) -> str:
    if w is None:
        return "-"
    if w.seconds is not None:
        return f"{w.seconds:.1f} s"
    return f"> {cap:.0f} s (at most {max(w.connected, w.healthy):,} of {total:,} connected)"


def cpu_cell(cpu: tuple[float, float, float] | None) -> str:
    if cpu is None:
        return "-"
    return f"{cpu[0]:.0f} % / {cpu[1]:.0f} % / {cpu[2]:.0f} %"


def hubs_in(r: Result) -> int:
    return r.rss_hubs or max(r.connect.connected, r.connect.healthy)


def per_hub_kib(r: Result) -> float | None:
    return (r.rss_kib - r.base_kib) / hubs_in(r) if r.rss_kib and hubs_in(r) else None


def marginal_kib(a: Result, b: Result) -> str:
    na, nb = hubs_in(a), hubs_in(b)
    if not (a.rss_kib and b.rss_kib) or na == nb:
        return "-"
    return f"{(b.rss_kib - a.rss_kib) / (nb - na):.1f} KiB"


def fmt_n(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def table(results: list[Result], pool: int, nofile: int) -> list[str]:
    """One column per Hub count; goals are judged where the goal says (the most Hubs, or
    10,000 Hubs)."""
    at = next((r for r in results if r.hubs == GOAL_AT), None)
    # fixed costs (glibc keeps the heap scrypt used, 16 MiB per concurrent proof) weigh on
    # small counts, so the memory goal is judged where they are spread thinnest
    largest = per_hub_kib(max(results, key=lambda r: r.hubs)) if results else None
    list_at = at.latency.get("list") if at else None
    restart_at = at.restart.seconds if at and at.restart else None
    rates = max(results, key=lambda r: r.hubs).restart_rates if results else None

    def cells(fn: Callable[[Result], str]) -> list[str]:
        return [fn(r) for r in results]

    rows: list[tuple[str, list[str], str, str]] = [
        (
            "all healthy in /list after start",
            cells(lambda r: waited(r.connect, r.hubs, CONNECT_CAP_S)),
            "",
            "",
        ),
        (
            "CPU while they connect: manager / peers / machine",
            cells(lambda r: cpu_cell(r.connect.cpu)),
            "",
            "",
        ),
        ("scrypt runs while they connect", cells(lambda r: fmt_n(r.first_scrypt)), "", ""),
        (
            "manager RSS: base → with Hubs",
            cells(
                lambda r: (
                    f"{r.base_kib / 1024:.0f} → {r.rss_kib / 1024:.0f} MiB" if r.rss_kib else "-"
                )
            ),
            "",
            "",
        ),
        (
            "manager memory per idle Hub: (RSS − base) / Hubs",
            cells(lambda r: "-" if (v := per_hub_kib(r)) is None else f"{v:.1f} KiB"),
            f"≤ {GOAL_KIB_PER_HUB:.0f} KiB at the most Hubs",
            verdict(None if largest is None else largest <= GOAL_KIB_PER_HUB),
        ),
        (
            "marginal memory per Hub (vs the column before)",
            ["-", *(marginal_kib(a, b) for a, b in itertools.pairwise(results))],
            "",
            "",
        ),
        (
            "idle CPU: manager / peers / machine",
            cells(lambda r: cpu_cell(r.idle_cpu)),
            "",
            "",
        ),
    ]
    for name in ENDPOINTS:
        goal = met = ""
        if name == "list":
            goal = f"p99 ≤ {GOAL_LIST_P99_MS:.0f} ms at {GOAL_AT:,}"
            ok = None if not (list_at and list_at.samples) else list_at.p99 <= GOAL_LIST_P99_MS
            met = verdict(ok if list_at is None or not list_at.errors else False)
        rows.append(
            (
                f"GET /{name} p50 / p99 (sequential)",
                [r.latency[name].cell() if name in r.latency else "-" for r in results],
                goal,
                met,
            )
        )
    rows += [
        (
            "requests per endpoint",
            cells(lambda r: str(len(r.latency["list"].samples)) if "list" in r.latency else "-"),
            "",
            "",
        ),
        (
            "restart: SIGTERM until exited",
            cells(lambda r: "-" if r.shutdown_s is None else f"{r.shutdown_s:.1f} s"),
            "",
            "",
        ),
        (
            "restart: all healthy again after",
            cells(lambda r: waited(r.restart, r.hubs, RESTART_CAP_S)),
            f"≤ {GOAL_RESTART_S:.0f} s at {GOAL_AT:,}",
            verdict(None if at is None else (restart_at or math.inf) <= GOAL_RESTART_S),
        ),
        (
            "restart: connects per second, busiest second / mean (peak ÷ mean)",
            cells(lambda r: rates_cell(r.restart_rates)),
            f"peak ≤ {GOAL_PEAK_OVER_MEAN:.0f}× mean at the most Hubs",
            verdict(None if rates is None else rates[0] <= GOAL_PEAK_OVER_MEAN * rates[1]),
        ),
        (
            "restart: CPU while they reconnect: manager / peers / machine",
            cells(lambda r: cpu_cell(r.restart.cpu if r.restart else None)),
            "",
            "",
        ),
    ]
    steady_at = at.steady if at else None
    if any(r.steady for r in results):
        rows += [
            (
                "steady: how long the Hubs idled",
                cells(lambda r: f"{r.steady.seconds:.0f} s" if r.steady else "-"),
                "",
                "",
            ),
            (
                "steady: CPU: manager / peers / machine",
                cells(lambda r: cpu_cell(r.steady.cpu if r.steady else None)),
                f"manager < {GOAL_STEADY_CPU:.0f} % at {GOAL_AT:,}",
                verdict(None if steady_at is None else steady_at.cpu[0] < GOAL_STEADY_CPU),
            ),
            (
                "steady: Hubs closed and admitted again",
                cells(lambda r: fmt_n(r.steady.readmitted) if r.steady else "-"),
                f"0 at {GOAL_AT:,}",
                verdict(None if steady_at is None else steady_at.readmitted == 0),
            ),
            (
                "steady: fewest healthy in /list (every 30 s)",
                cells(lambda r: f"{r.steady.fewest_healthy:,}" if r.steady else "-"),
                "",
                "",
            ),
            (
                "steady: manager RSS at its start → end",
                cells(
                    lambda r: (
                        f"{r.steady.rss_kib[0] / 1024:.0f} → {r.steady.rss_kib[1] / 1024:.0f} MiB"
                        if r.steady
                        else "-"
                    )
                ),
                "",
                "",
            ),
        ]
    for label, metric in (
        ("scrypt runs", "manager_scrypt_runs_total"),
        ("proofs from memory", "manager_proof_cache_hits_total"),
        ("proofs from SQL", "manager_proof_store_hits_total"),
        ("tunnels refused", "manager_tunnels_refused_total"),
        ("admission waits (slots granted)", "manager_admission_wait_seconds_count"),
    ):
        rows.append(
            (
                f"restart: {label}",
                # a counter without samples yet is left out of the text: 0
                [
                    fmt_n(r.restart_metrics.get(metric, 0)) if r.restart_metrics else "-"
                    for r in results
                ],
                "",
                "",
            )
        )
    rows += [
        (
            "manager stderr: error / warning lines",
            cells(lambda r: f"{r.stderr_errors} / {r.stderr_warnings}"),
            "",
            "",
        ),
        ("Hub peers that gave up or were dropped", cells(lambda r: str(r.gave_up)), "", ""),
        (
            "setup: peer processes / distinct key proofs",
            cells(lambda r: f"{-(-r.hubs // PEERS_PER_PROCESS)} / {min(pool, r.hubs)}"),
            "",
            "",
        ),
        ("wall time of this column", cells(lambda r: f"{r.wall_s:.0f} s"), "", ""),
    ]
    if any(r.failed for r in results):
        rows.append(("failed", cells(lambda r: r.failed.replace("|", "/")), "", ""))
    head = " | ".join(f"{r.hubs:,} Hubs" for r in results)
    out = [f"| measure | {head} | goal | met? |", "|---|" + "---:|" * len(results) + "---|---|"]
    out += [f"| {label} | {' | '.join(c)} | {g} | {m} |" for label, c, g, m in rows]
    out.append("")
    out.append(
        f"> LOAD every {LOAD_INTERVAL_MS / 1000:.0f} s; {SEEDED_HUBS} Hubs carry one Sequence and "
        f"one Instance each; RLIMIT_NOFILE {nofile:,}. CPU: manager and peers in % of one core, "
        f"the machine in % of all. Latency: up to {LATENCY_REQUESTS} sequential requests or "
        f"{LATENCY_BUDGET_S:.0f} s per endpoint. Waits stop after {CONNECT_CAP_S:.0f} s "
        f"(start) and {RESTART_CAP_S:.0f} s (restart)."
    )
    for r in results:
        if r.seed_errors:
            out.append(f"> {r.hubs:,} Hubs: {r.seed_errors} Hubs not seeded (errors or time)")
        for n, text in r.stderr[:4]:
            out.append(f"> {r.hubs:,} Hubs, manager stderr: {n} × {text}")
        if r.stderr:  # when each phase began, to place those lines in it
            when = ", ".join(f"{what} {at}" for what, at in r.phases)
            out.append(f"> {r.hubs:,} Hubs, phases (time of day): {when}")
    return out


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """`make bench` stops a part that overruns with SIGTERM: clean up as on an error."""
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("counts", nargs="*", type=int, default=[1000, 5000, 10000])
    parser.add_argument("--pool", type=int, default=500, help="distinct key proofs")
    parser.add_argument(
        "--steady",
        type=float,
        default=0.0,
        help="seconds to leave the Hubs idle after the latency part (make bench-scale: 600)",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    nofile = raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    results: list[Result] = []
    try:
        t0 = time.monotonic()
        template, token, space, key = prepare(work)
        proofs = work / "proofs.json"
        proofs.write_text(json.dumps(proof_pool(key, args.pool)))
        print(f"# {args.pool} proofs: {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        for n in args.counts:
            results.append(run(n, template, token, space, key, proofs, args.steady))
            print(f"# {n} Hubs: {results[-1].wall_s:.0f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(table(results, args.pool, nofile)))


if __name__ == "__main__":
    main(sys.argv[1:])
