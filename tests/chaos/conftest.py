"""Plumbing for the chaos tests: a private PostgreSQL cluster that a test may stop and start
at will, /proc and /api/v1/metrics readings of a manager process, and polling with deadlines.

Everything runs as real processes on loopback. The PostgreSQL cluster is a throw-away one
(initdb into a temp dir, its own port and socket dir), never the machine's packaged cluster:
as root (CI) its binaries run as the `postgres` user, since initdb refuses to run as root.
Without PostgreSQL binaries the tests that need them skip, except in CI (env CI), where the
`postgresql` package is installed and their absence is an error.
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
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

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
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are needed in CI (apt postgresql)")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs a 'postgres' user to run initdb/pg_ctl as")
        if shutil.which("runuser") is None:
            pytest.fail("running as root needs runuser to run initdb/pg_ctl as postgres")
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
