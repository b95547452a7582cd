"""The real Scramjet Transform Hub 1.0.1 and `si` 1.0.1 (`../shared/sth`), driven from pytest.

`sth_dist()` installs the compiled release once per machine (`install.sh` caches it outside
the clone) and once per test run checks it. `RealHub` starts one Hub with the flags a user
passes (`--platform-api`, `--platform-space`, `--platform-api-key`), its own ports, config
and Sequence folder, in its own process group; `stop()` kills its Instances through its API,
then the Hub, then any runner left behind (1.0.1 runners are detached from the Hub's group,
so they are found by the Hub's private folder on their command line).

Everything here is asyncio-friendly: the manager under test usually runs in the test's own
event loop, so nothing may block it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port, need_service

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = Path(os.environ.get("STH_INSTALL_SH", REPO.parent / "shared" / "sth" / "install.sh"))


def _missing(reason: str) -> None:
    """No STH here: a failure in CI (which must run every real-Hub test), a skip elsewhere."""
    need_service(reason)


@cache
def _install() -> Path | str:
    if os.environ.get("STH_DIST"):
        return Path(os.environ["STH_DIST"])
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node and npm are needed for the real STH 1.0.1"
    if not INSTALL_SH.exists():
        return f"the real STH 1.0.1 installer is not at {INSTALL_SH} (set STH_INSTALL_SH)"
    proc = subprocess.run(
        ["bash", str(INSTALL_SH)], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        # The installer exists but failed: that is a broken test run, never a skip.
        raise RuntimeError(f"{INSTALL_SH} failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def sth_dist() -> Path:
    got = _install()
    if isinstance(got, str):
        _missing(got)
    assert isinstance(got, Path)
    return got


def _processes_mentioning(marker: str) -> list[int]:
    """Processes whose command line, working folder or environment names `marker`.

    STH 1.0.1 runners are detached from their Hub and run `node start-runner.js` in the
    Hub's working folder: only their environment (`SEQUENCE_PATH=<-D folder>/…`) names
    the Hub's own folder."""
    needle = marker.encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (
                needle in (entry / "cmdline").read_bytes()
                or marker in os.readlink(entry / "cwd")
                or needle in (entry / "environ").read_bytes()
            ):
                pids.append(int(entry.name))
    return pids


@dataclass
class RealHub:
    """One real STH 1.0.1 process joined (or trying to join) a Space."""

    hub_id: str
    home: Path
    port: int
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def log_path(self) -> Path:
        return self.home / f"hub-{self.starts}.log"

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.home.glob("hub-*.log")))

    async def start(self, wait_api: bool = True) -> None:
        self.starts += 1
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        if wait_api:
            await self.wait_api()

    async def wait_api(self, timeout: float = 30.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise AssertionError(f"Hub {self.hub_id} exited:\n{self.log()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/version")).status_code == 200:
                        return
                assert asyncio.get_running_loop().time() < deadline, "Hub API did not start"
                await asyncio.sleep(0.1)

    async def exited(self, timeout: float) -> int | None:
        """The Hub's exit code once it exits within `timeout` s, else None."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.proc is not None and self.proc.poll() is None:
            if asyncio.get_running_loop().time() > deadline:
                return None
            await asyncio.sleep(0.1)
        return None if self.proc is None else self.proc.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the Hub's process group (not its detached runners)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                async with httpx.AsyncClient(timeout=3) as client:
                    for inst in (await client.get(f"{self.url}/instances")).json():
                        await client.post(f"{self.url}/instance/{inst['id']}/_kill", json={})
            self.kill(signal.SIGTERM)
            if await self.exited(5) is None:
                self.kill(signal.SIGKILL)
                await self.exited(5)
        self.reap_runners()

    def reap_runners(self) -> None:
        for pid in _processes_mentioning(str(self.home)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def hub_argv(
    dist: Path,
    home: Path,
    port: int,
    *,
    platform_api: str,
    platform_space: str,
    key: str | None,
    hub_id: str | None,
    description: str | None = None,
    tags: str | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    seqs = home / "sequences"
    seqs.mkdir(parents=True, exist_ok=True)
    config = home / "config.json"
    config.write_text(json.dumps({"host": {"infoFilePath": str(home / "sth-id.json")}}))
    argv = [
        shutil.which("node") or "node",
        str(dist / "sth" / "bin" / "hub.js"),
        "--runtime-adapter",
        "process",
        "-H",
        "127.0.0.1",
        "-P",
        str(port),
        "--isp",
        str(free_port()),
        "--no-telemetry",
        "-D",
        str(seqs),
        "-c",
        str(config),
        "--platform-api",
        platform_api,
        "--platform-space",
        platform_space,
    ]
    if key is not None:
        argv += ["--platform-api-key", key]
    if hub_id is not None:
        argv += ["--id", hub_id]
    if description is not None:
        argv += ["--description", description]
    if tags is not None:
        argv += ["--tags", tags]
    return argv + list(extra)


class HubFleet:
    """Starts real Hubs into one manager's default Space and stops them all at the end."""

    def __init__(self, manager: Any, root: Path) -> None:
        self.manager = manager
        self.root = root
        self.hubs: list[RealHub] = []
        self.dist = sth_dist()

    def space_arg(self, space_id: str | None = None) -> str:
        space = space_id or self.manager.world.space_id
        return f"{space.rsplit('-', 1)[0]}:{space}"

    async def start(
        self,
        hub_id: str | None,
        *,
        key: str | None = None,
        join: bool = True,
        description: str | None = None,
        tags: str | None = None,
        extra: tuple[str, ...] = (),
        home_name: str | None = None,
    ) -> RealHub:
        key = key or await self.manager.new_key(f"real hub {hub_id}")
        home = self.root / (home_name or f"sth-{hub_id or len(self.hubs)}")
        port = free_port()
        argv = hub_argv(
            self.dist,
            home,
            port,
            platform_api=self.manager.url,
            platform_space=self.space_arg(),
            key=key,
            hub_id=hub_id,
            description=description,
            tags=tags,
            extra=extra,
        )
        hub = RealHub(hub_id or "", home, port, argv)
        self.hubs.append(hub)
        await hub.start()
        if join and hub_id:
            await self.wait_listed(hub_id)
        return hub

    async def wait_listed(
        self, hub_id: str, *, active: bool = True, healthy: bool = True, timeout: float = 20
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for h in await self.manager.hubs():
                if (
                    h["id"] == hub_id
                    and h["isConnectionActive"] == active
                    and (not active or not healthy or h["healthy"])
                ):
                    return dict(h)
            if asyncio.get_running_loop().time() > deadline:
                logs = "\n".join(hub.log()[-2000:] for hub in self.hubs if hub.hub_id == hub_id)
                raise AssertionError(f"{hub_id} not listed active={active} in time\n{logs}")
            await asyncio.sleep(0.1)

    async def stop_all(self) -> None:
        await asyncio.gather(*(hub.stop() for hub in self.hubs), return_exceptions=True)


class Si:
    """`si` 1.0.1 from the STH release, production profile, `HOME` in a scratch folder."""

    def __init__(self, home: Path, api_url: str, token: str) -> None:
        self.bin = sth_dist() / "cli" / "bin" / "index.js"
        self.env = {**os.environ, "HOME": str(home / "home"), "TMPDIR": str(home / "tmp")}
        for key in ("SI_CONFIG", "SI_CONFIG_PATH"):
            self.env.pop(key, None)
        Path(self.env["HOME"]).mkdir(parents=True, exist_ok=True)
        Path(self.env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        self.api_url = api_url
        self.token = token

    async def configure(self) -> None:
        """The README's lines: the URL first (production needs it), then env and token."""
        await self.run("config", "set", "middlewareApiUrl", f"{self.api_url}/api/v1")
        await self.run("config", "set", "env", "production")
        await self.run("config", "set", "token", self.token)
        await self.run("config", "set", "log", "--format", "json")

    async def run(
        self, *args: str, timeout: float = 60, check: bool = True, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node",
            str(self.bin),
            *args,
            env=self.env,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(
                f"si {' '.join(args)} did not finish in {timeout} s: {out.decode()[-500:]}"
                f" {err.decode()[-500:]}"
            ) from None
        done = subprocess.CompletedProcess(
            list(args), proc.returncode or 0, out.decode(), err.decode()
        )
        if check:
            assert done.returncode == 0, f"si {' '.join(args)}: {done.stderr}{done.stdout}"
        return done

    async def json(self, *args: str, timeout: float = 60) -> Any:
        return json.loads((await self.run(*args, timeout=timeout)).stdout)

    async def stream(self, *args: str, seconds: float) -> list[str]:
        """Run a command that streams for `seconds`, then stop it; the lines it printed."""
        proc = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node",
            str(self.bin),
            *args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        lines: list[str] = []

        async def read() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                if line.strip():
                    lines.append(line.decode().rstrip("\n"))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), seconds)
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        return lines
