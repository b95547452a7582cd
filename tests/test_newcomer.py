"""The README's quick start as a newcomer meets it: the exact command `make run` executes
(`make -n run`, on a free port and a temp data dir) serves, prints the admin token once,
the two `si` lines and how to join a Hub (with this manager's URL and the real org and
Space ids), and prints no token on the next start."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import httpx

from tests.conftest import free_port, need_service
from tests.manager_process import TOKEN_LINE, ManagerProcess

ROOT = Path(__file__).resolve().parents[1]
SI_JSON = re.compile(r"^  si config set json '(\{.*\})'$", re.M)
KEY_COMMAND = re.compile(r"^  (\S*space-manager --data-dir .* access-key create .*)$", re.M)
HUB_COMMAND = re.compile(r"^  (scramjet-transform-hub .*)$", re.M)


def make_run_line(port: int, data_dir: Path) -> str:
    """The command line make would run for `make run PORT=… DATA_DIR=…` (a dry run)."""
    make = shutil.which("make")
    if make is None:
        need_service("make not found")
    # Not a sub-make of `make test`: no inherited flags, no "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    dry = subprocess.run(
        [make, "--no-print-directory", "-n", "run", f"PORT={port}", f"DATA_DIR={data_dir}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # Only the recipe of `run` itself (a stale venv stamp would add the install steps).
    lines = [line for line in dry.stdout.splitlines() if "space-manager" in line]
    assert len(lines) == 1, dry.stdout
    return lines[0]


class MakeRun(ManagerProcess):
    """That command line through a shell in the repository, as make runs it, with none of
    the MANAGER_* settings of the environment: the embedded defaults."""

    def __init__(self, data_dir: Path, port: int, line: str) -> None:
        super().__init__(data_dir, port=port)
        self.line = line
        self.group: int | None = None
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MANAGER_") and k != "PYTHONUNBUFFERED"
        }

    def spawn(self, stdout: IO[str], stderr: IO[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.line,
            shell=True,
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            text=True,
            env=self.env,
            start_new_session=True,  # its own process group: the shell and the manager
        )

    def send(self, sig: str) -> None:
        assert self.proc is not None
        self.group = self.proc.pid  # start_new_session: the shell leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.group, signal.SIGKILL if sig == "kill" else signal.SIGTERM)

    def stop(self, sig: str = "term") -> None:
        """The shell (dash does not exec the command) dies at once on SIGTERM while the
        manager shuts down gracefully: wait until the whole group is gone, so the port is
        free again and nothing outlives the test."""
        super().stop(sig)
        group = self.group
        if group is None:
            return
        deadline = time.monotonic() + 15
        while group_alive(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                deadline = time.monotonic() + 15
            time.sleep(0.05)
        self.group = None


def group_alive(pgid: int) -> bool:
    """Any process of the group still running (zombies waiting for a reaper do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state != "Z":
            return True
    return False


def test_make_run_first_start_tells_a_newcomer_everything(tmp_path: Path):
    port = free_port()
    data = tmp_path / "data"
    line = make_run_line(port, data)
    assert line.startswith("MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2} "), line
    assert f"--data-dir {data} serve --host 127.0.0.1 --port {port}" in line, line

    manager = MakeRun(data, port, line)
    manager.start()
    try:
        out = manager.stdout
        tokens = TOKEN_LINE.findall(out)
        assert len(tokens) == 1, out
        token = tokens[0]
        auth = {"Authorization": f"Bearer {token}"}
        httpx.get(f"{manager.url}/api/v1/version", headers=auth, timeout=5).raise_for_status()
        resp = httpx.get(f"{manager.url}/api/v1/spaces", headers=auth, timeout=5)
        assert resp.status_code == 200, resp.text
        [space] = resp.json()
        space_id, org_id = space["id"], space["orgId"]
        assert f"created organization {org_id}, Space {space_id}" in out

        # si: the profile points at this manager with the token, and the log format line.
        profile = SI_JSON.search(out)
        assert profile, out
        assert json.loads(profile.group(1)) == {
            "middlewareApiUrl": f"{manager.url}/api/v1",
            "env": "production",
            "token": token,
        }
        assert "\n  si config set log --format json\n" in out

        # Joining a Hub: the access-key command runs as printed and prints a key ...
        key_line = KEY_COMMAND.search(out)
        assert key_line, out
        argv = shlex.split(key_line.group(1))
        assert argv[1:] == [
            "--data-dir",
            str(data),
            "access-key",
            "create",
            "--space",
            space_id,
            "--description",
            "my hub",
            "--platform-api",
            manager.url,
        ], argv
        made = subprocess.run(
            key_line.group(1),
            shell=True,
            cwd=ROOT,
            env=manager.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        assert key and "\n" not in key, made.stdout
        # The Hub command it prints names this manager (not the default port), ready to run.
        assert f"scramjet-transform-hub --platform-api {manager.url} " in made.stderr, made.stderr
        keys = httpx.get(f"{manager.url}/api/v1/space/{space_id}/apikey", headers=auth, timeout=5)
        assert keys.status_code == 200 and len(keys.json()["accessKeys"]) == 1, keys.text

        # ... and the Hub line names this manager, org:Space, and where the key goes.
        hub_line = HUB_COMMAND.search(out)
        assert hub_line, out
        assert shlex.split(hub_line.group(1)) == [
            "scramjet-transform-hub",
            "--platform-api",
            manager.url,
            "--platform-space",
            f"{org_id}:{space_id}",
            "--platform-api-key",
            "KEY",
        ]
    finally:
        manager.stop()
    assert token not in manager.logs()

    manager.start()
    try:
        assert TOKEN_LINE.findall(manager.stdout) == [], manager.stdout
        assert "First start" not in manager.stdout and token not in manager.stdout
        resp = httpx.get(f"{manager.url}/api/v1/spaces", headers=auth, timeout=5)
        assert resp.status_code == 200 and resp.json()[0]["id"] == space_id
    finally:
        manager.stop()
