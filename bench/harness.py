"""Shared plumbing for the benchmarks: a manager process, its token and keys, Hub peers,
and /proc readings. Everything runs on loopback in one process tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "interop" / "node"
BIN = Path(sys.executable).parent / "space-manager"
TOKEN = re.compile(r"^\s+(ey[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int, main_thread: bool = False) -> float:
    """User + system CPU of a process (all its threads), or of its main thread alone."""
    stat = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Manager:
    """`space-manager serve` in a scratch data dir."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        database_url: str | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-manager-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "MANAGER_LOG_LEVEL": "warning",
            "MALLOC_ARENA_MAX": "2",
            "MANAGER_MAX_TUNNELS_PER_SOURCE": "0",  # every bench Hub comes from 127.0.0.1
            **(env or {}),
        }
        self.env.pop("MANAGER_DATABASE_URL", None)
        if database_url:  # replicas on one database (the first one started bootstraps it)
            self.env["MANAGER_DATABASE_URL"] = database_url
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.space = ""

    def start(self) -> None:
        out = (self.dir / "stdout").open("ab")
        err = (self.dir / "stderr").open("ab")
        self.proc = subprocess.Popen(
            [
                *(str(BIN), "--data-dir", str(self.dir / "data")),
                *("serve", "--port", str(self.port), *self.args),
            ],
            stdout=out,
            stderr=err,
            env=self.env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "stderr").read_text()[-2000:]) from None
                time.sleep(0.1)
        if not self.token:  # a later replica on the same database: set from the first
            found = TOKEN.search((self.dir / "stdout").read_text())
            assert found, "no token printed"
            self.token = found.group(1)
            self.space = self.get("/api/v1/spaces")[0]["id"]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, path: str) -> Any:
        resp = httpx.get(self.url + path, headers=self.headers, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def new_key(self) -> str:
        resp = httpx.post(
            f"{self.url}/api/v1/space/{self.space}/apikey",
            json={},
            headers=self.headers,
            timeout=30,
        )
        resp.raise_for_status()
        return str(resp.json()["accessKey"])

    def space_url(self, path: str) -> str:
        return f"{self.url}/api/v1/space/{self.space}/api/v1/{path}"


def start_peers(manager: Manager, key: str, *args: str) -> subprocess.Popen[bytes]:
    org = manager.space.rsplit("-", 1)[0]
    return subprocess.Popen(
        [
            "node",
            str(NODE_DIR / "hub-peer.js"),
            "--platform-api",
            manager.url,
            "--platform-space",
            f"{org}:{manager.space}",
            "--platform-api-key",
            key,
            *args,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def wait_event(proc: subprocess.Popen[bytes], name: str, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == name:
            return dict(ev)
    raise TimeoutError(f"no {name} event")


def stop_peers(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
