"""Runs `space-manager serve` as a real process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import free_port
from tests.running import SpaceCalls

BIN = Path(sys.executable).parent / "space-manager"
TOKEN_LINE = re.compile(r"^\s+(ey[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\s*$", re.M)


class ManagerProcess:
    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        scheme: str = "http",
    ):
        self.args = args
        self.scheme = scheme
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = data_dir.parent / f"manager-{self.port}.log"
        self.stdout = ""
        self.starts = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a")
        out_path = self.log_path.with_suffix(f".out{self.starts}")
        self.starts += 1
        self._out = out_path.open("w")
        self.proc = self.spawn(self._out, self._log)
        try:
            self._wait_started(timeout)
        except BaseException:
            self.stop()  # no process or open log files left behind by a failed start
            raise
        self.stdout = out_path.read_text()

    def spawn(self, stdout: IO[str], stderr: IO[str]) -> subprocess.Popen[str]:
        """Start `space-manager serve`; a subclass may start the manager another way."""
        return subprocess.Popen(
            [
                str(BIN),
                "--data-dir",
                str(self.data_dir),
                "serve",
                "--port",
                str(self.port),
                *self.args,
            ],
            stdout=stdout,
            stderr=stderr,
            text=True,
            env=self.env,
        )

    def send(self, sig: str) -> None:
        """Stop the process: SIGKILL for "kill", else SIGTERM."""
        assert self.proc is not None
        if sig == "kill":
            self.proc.kill()
        else:
            self.proc.terminate()

    def _wait_started(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"manager exited: {self.log_path.read_text()[-2000:]}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=1, verify=False)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("manager did not start in time")

    def token(self) -> str | None:
        m = TOKEN_LINE.search(self.stdout)
        return m.group(1) if m else None

    def stop(self, sig: str = "term") -> None:
        if self.proc is None:
            return
        self.send(sig)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.send("kill")
            self.proc.wait()
        self.proc = None
        self._log.close()
        self._out.close()

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@dataclass
class _World:
    space_id: str


class ProcessManager(SpaceCalls):
    """A `space-manager serve` process, seen the way HubFleet sees the in-process one."""

    def __init__(self, proc: ManagerProcess, client: httpx.AsyncClient, space_id: str):
        self.proc = proc
        self.client = client
        self.url = proc.url
        self.world = _World(space_id)


@contextlib.asynccontextmanager
async def manager_process(data_dir: Path) -> AsyncIterator[ProcessManager]:
    """A first-started manager process with its admin client on the default Space."""
    proc = ManagerProcess(data_dir)
    await asyncio.to_thread(proc.start)
    try:
        token = proc.token()
        assert token, proc.stdout
        async with httpx.AsyncClient(
            base_url=proc.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            space = (await client.get("/api/v1/spaces")).json()[0]["id"]
            yield ProcessManager(proc, client, space)
    finally:
        await asyncio.to_thread(proc.stop)
