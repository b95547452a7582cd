"""Plumbing for the chaos tests: a private PostgreSQL cluster that a test may stop and start
at will, /proc and /api/v1/metrics readings of a manager process, and polling with deadlines.

Everything runs as real processes on loopback. The PostgreSQL cluster is a throw-away one
(initdb into a temp dir, its own port and socket dir), never the machine's packaged cluster:
as root (CI) its binaries run as the `postgres` user, since initdb refuses to run as root.
Without PostgreSQL binaries the tests that need them skip, except in CI (env CI true), where
the `postgresql` package is installed and their absence is an error (`need_service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, need_service

PG_USER = "chaos"
PG_DB = "manager"


# ---------------------------------------------------------------------------------------------
# polling


async def until(
    check: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
    state: Callable[[], str] | None = None,
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `timeout`
    saying `what` was awaited (and `state()` when given)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{state()}" if state is not None else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        await asyncio.sleep(interval)


# ---------------------------------------------------------------------------------------------
# a private PostgreSQL cluster


def pg_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<v>/bin (Debian), else wherever initdb is on PATH."""
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: [int(p) if p.isdigit() else 0 for p in re.split(r"[/.]", d)],
    )
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def require_pg_bindir() -> Path:
    bindir = pg_bindir()
    if bindir is None:
        need_service("PostgreSQL binaries (initdb, pg_ctl) not found (Debian package postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            need_service("running as root needs a 'postgres' user to run initdb/pg_ctl as")
        if shutil.which("runuser") is None:
            need_service("running as root needs runuser to run initdb/pg_ctl as postgres")
    return bindir


class PgCluster:
    """initdb'd into a temp dir; `start()` / `stop(mode)` as often as a test likes."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sock"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    @classmethod
    def create(cls) -> PgCluster:
        bindir = require_pg_bindir()
        # As root the cluster belongs to `postgres`, which must be able to reach it: /tmp
        # rather than a TMPDIR that may sit under root's home.
        parent = "/tmp" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="chaos-pg-", dir=parent))
        cluster = cls(bindir, root)
        cluster.sockets.mkdir()
        if cluster.as_postgres:
            user = pwd.getpwnam("postgres")
            for path in (root, cluster.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        try:
            cluster._run(
                "initdb",
                "-D",
                str(cluster.data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--no-locale",
                "-E",
                "UTF8",
                "--no-sync",
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    @property
    def url(self) -> str:
        """What the manager gets (SQLAlchemy + asyncpg)."""
        return f"postgresql+asyncpg://{PG_USER}@127.0.0.1:{self.port}/{PG_DB}"

    @property
    def dsn(self) -> str:
        """What asyncpg gets, for the tests' own look at the rows."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DB}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> str:
        argv = [str(self.bindir / tool), *args]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        out = self.root / f"{tool}.out"
        with out.open("w") as sink:
            proc = subprocess.run(
                argv,
                cwd=self.root,  # the postgres user may not be allowed into the caller's cwd
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        text = out.read_text()
        if proc.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed ({proc.returncode}):\n{text}{log}")
        return text

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """`fast`: clients are told to go; `immediate`: every process dies, as in a crash."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def running(self) -> bool:
        argv = [str(self.bindir / "pg_ctl"), "status", "-D", str(self.data)]
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, cwd=self.root, capture_output=True, check=False).returncode == 0

    def createdb(self, name: str = PG_DB) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A started private cluster with an empty `manager` database; removed afterwards."""
    cluster = PgCluster.create()
    try:
        cluster.start()
        cluster.createdb()
        yield cluster
    finally:
        cluster.destroy()


# ---------------------------------------------------------------------------------------------
# readings of a manager process


@dataclass(frozen=True)
class Reading:
    """One look at a manager process: /proc, plus /api/v1/metrics when it answers."""

    label: str
    rss_kib: int
    fds: int
    threads: int
    tasks: int | None = None
    hubs_connected: int | None = None
    scrypt_runs: int | None = None

    @staticmethod
    def row_header() -> str:
        return (
            f"{'reading':<16} {'RSS MiB':>8} {'fds':>5} {'threads':>7} {'tasks':>6} "
            f"{'hubs':>5} {'scrypt':>7}"
        )

    def row(self) -> str:
        def opt(v: int | None) -> str:
            return "-" if v is None else str(v)

        return (
            f"{self.label:<16} {self.rss_kib / 1024:>8.1f} {self.fds:>5} {self.threads:>7} "
            f"{opt(self.tasks):>6} {opt(self.hubs_connected):>5} {opt(self.scrypt_runs):>7}"
        )


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        out[name] = value.strip()
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format → {name: value} for unlabelled samples (labelled ones are
    summed under their bare name)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if match is None:
            continue
        with contextlib.suppress(ValueError):
            value = float(match.group(3))
            out[match.group(1)] = out.get(match.group(1), 0.0) + value
    return out


async def fetch_metrics(client: httpx.AsyncClient) -> dict[str, float] | None:
    """GET /api/v1/metrics, or None while the manager has no such endpoint."""
    resp = await client.get("/api/v1/metrics")
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, f"/api/v1/metrics: {resp.status_code} {resp.text[:300]}"
    return parse_metrics(resp.text)


async def read_manager(label: str, pid: int, client: httpx.AsyncClient) -> Reading:
    metrics = await fetch_metrics(client)
    status = proc_status(pid)

    def metric(name: str) -> int | None:
        if metrics is None or name not in metrics:
            return None
        return int(metrics[name])

    return Reading(
        label=label,
        rss_kib=int(status["VmRSS"].split()[0]),
        fds=open_fds(pid),
        threads=int(status["Threads"]),
        tasks=metric("manager_asyncio_tasks"),
        hubs_connected=metric("manager_hubs_connected"),
        scrypt_runs=metric("manager_scrypt_runs_total"),
    )


def show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Print past pytest's capture, so the CI log keeps the numbers of passing runs too."""
    with capsys.disabled():
        print(f"\n{text}", flush=True)


def count_tracebacks(log: str) -> int:
    return log.count("Traceback (most recent call last)")


def as_json(resp_text: str) -> Any:
    try:
        return json.loads(resp_text)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# a memory probe inside a manager process, tracemalloc snapshots included (test tooling only)

MEMPROBE_SITE = Path(__file__).resolve().parent / "memprobe"
REPO_ROOT = Path(__file__).resolve().parents[2]


class MemoryProbe:
    """Drives `memprobe/sitecustomize.py` in a manager process: `env()` goes into the
    manager's environment (PYTHONPATH puts the probe's sitecustomize first), `take()` asks
    the running process for a snapshot (SIGUSR2) and returns its figures, `growth()` compares
    two snapshots by line. `frames=0` keeps tracemalloc off (RSS, malloc and SQLite figures
    only, no slow-down)."""

    def __init__(self, directory: Path, frames: int = 1) -> None:
        self.directory = directory
        self.frames = frames
        directory.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(MEMPROBE_SITE), os.environ.get("PYTHONPATH")) if p)
        return {
            "PYTHONPATH": path,
            "MEMPROBE_DIR": str(self.directory),
            "MEMPROBE_FRAMES": str(self.frames),
        }

    async def take(self, pid: int, label: str, timeout: float = 120) -> dict[str, Any]:
        done = self.directory / f"{label}.json"
        done.unlink(missing_ok=True)
        (self.directory / "request").write_text(label)
        os.kill(pid, signal.SIGUSR2)
        await until(
            done.exists,
            timeout,
            f"memory probe {label!r} from pid {pid}",
            interval=0.2,
            state=lambda: self._error(),
        )
        info: dict[str, Any] = json.loads(done.read_text())
        return info

    def _error(self) -> str:
        error = self.directory / "error.txt"
        return error.read_text() if error.exists() else "(no error file)"

    def growth(self, before: str, after: str, top: int = 15, by: str = "lineno") -> list[str]:
        """The `top` biggest changes from snapshot `before` to `after`, one line each."""
        import tracemalloc

        ignore = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, str(MEMPROBE_SITE / "*")),
        ]
        old, new = (
            tracemalloc.Snapshot.load(str(self.directory / f"{label}.tracemalloc")).filter_traces(
                ignore
            )
            for label in (before, after)
        )
        stats = new.compare_to(old, by)
        total = sum(s.size_diff for s in stats)
        lines = [f"traced by {by}, {before} -> {after}: {total / 1024:+.1f} KiB in all"]
        for stat in stats[:top]:
            frame = stat.traceback[0]
            where = f"{_short(frame.filename)}:{frame.lineno}"
            lines.append(
                f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks "
                f"(now {stat.size / 1024:9.1f} KiB) {where}"
            )
        return lines


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", f"{REPO_ROOT}/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def describe_probe(info: dict[str, Any]) -> str:
    """One line of a probe's figures (KiB / MiB)."""
    proc, mall, sq = info.get("proc_kib", {}), info.get("mallinfo2", {}), info.get("sqlite", {})
    pm = info.get("pymalloc", {})

    def mib(v: int | None, unit: int = 1024 * 1024) -> str:
        return "-" if v is None else f"{v / unit:.1f}"

    parts = [
        f"{info['label']:<12}",
        f"rss {mib(proc.get('VmRSS'), 1024)}",
        f"anon {mib(proc.get('RssAnon'), 1024)}",
        f"traced {mib(info.get('traced'))}",
        f"(tm overhead {mib(info.get('tracemalloc_overhead'))})",
        f"malloc in-use {mib(mall.get('uordblks'))} free {mib(mall.get('fordblks'))} "
        f"mmap {mib(mall.get('hblkhd'))}",
        f"sqlite {mib(sq.get('memory_used'))}",
        f"pymalloc arenas {mib(pm.get('arena_total'))} in blocks "
        f"{mib(pm.get('bytes in allocated blocks'))}",
        f"gc objects {info.get('gc_objects')}",
    ]
    if "after_trim_proc_kib" in info:
        parts.append(f"rss after malloc_trim {mib(info['after_trim_proc_kib'].get('VmRSS'), 1024)}")
    return " ".join(parts) + " MiB"


def live_memory(info: dict[str, Any]) -> dict[str, int]:
    """KiB held by live allocations, from a probe: `python` (tracemalloc's traced memory when
    tracing, else pymalloc's allocated blocks) and `malloc` (glibc malloc in use, less
    SQLite's page caches and statements, which its own limits bound). Figures the platform
    does not give are left out."""
    out: dict[str, int] = {}
    traced = info.get("traced")
    pymalloc = info.get("pymalloc", {}).get("bytes in allocated blocks")
    if traced is not None:
        out["python"] = traced // 1024
    elif pymalloc is not None:
        out["python"] = pymalloc // 1024
    in_use = info.get("mallinfo2", {}).get("uordblks")
    if in_use is not None and traced is None:  # tracemalloc's tables are malloc'd too
        out["malloc"] = (in_use - info.get("sqlite", {}).get("memory_used", 0)) // 1024
    return out


def type_growth(before: dict[str, Any], after: dict[str, Any], top: int = 12) -> str:
    """Live objects by type that grew most between two probes."""
    old, new = before.get("types", {}), after.get("types", {})
    diff = sorted(
        ((new.get(k, 0) - old.get(k, 0), k) for k in set(old) | set(new)),
        reverse=True,
    )
    grown = ", ".join(f"{k} {d:+d}" for d, k in diff[:top] if d)
    imported = sorted(set(after.get("modules", ())) - set(before.get("modules", ())))
    return f"objects by type: {grown}\nmodules imported meanwhile: {', '.join(imported) or '-'}"
