"""Several `space-manager serve` replicas on one PostgreSQL database, behind HAProxy in TCP
mode: the shape of a multi-replica deployment, as processes on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from manager.db import migrate
from tests.conftest import free_port, need_service, postgres_url
from tests.manager_process import ManagerProcess
from tests.running import SpaceCalls

SECRET = "replica-test-server-secret-0123456789abcdef"
PEER_SECRET = "replica-test-peer-secret"
LEASE_S = "4"


@dataclass
class _World:
    space_id: str
    admin: Any = None


@dataclass
class Cluster(SpaceCalls):
    """Replicas and the balancer; `client`/`url` go through the balancer (what Hubs use)."""

    replicas: list[ManagerProcess]
    url: str
    client: httpx.AsyncClient
    world: _World
    token: str
    root: Path
    balancer: subprocess.Popen[bytes] | None = None
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def direct(self, i: int) -> httpx.AsyncClient:
        """An admin client to replica `i` itself, bypassing the balancer."""
        return self.clients[i]

    async def held(self, i: int) -> list[str]:
        """The Hub ids replica `i` holds, asked through its peer route."""
        resp = await self.clients[i].get(
            f"/_peer/v1/spaces/{self.world.space_id}/hubs",
            headers={"x-manager-peer-secret": PEER_SECRET},
        )
        assert resp.status_code == 200, resp.text
        return [h["id"] for h in resp.json()["hubs"]]


def replica_env(db_url: str, name: str) -> dict[str, str]:
    """Each replica's peer route on a port of its own (MANAGER_PEER_PORT), as in Kubernetes."""
    peer_port = free_port()
    return {
        "MANAGER_PEER_PORT": str(peer_port),
        "MANAGER_PEER_URL": f"http://127.0.0.1:{peer_port}",
        "MANAGER_DATABASE_URL": db_url,
        "MANAGER_SECRET": SECRET,
        "MANAGER_PEER_SECRET": PEER_SECRET,
        "MANAGER_REPLICA_ID": name,
        "MANAGER_REPLICA_LEASE_S": LEASE_S,
        "MANAGER_DRAIN_GRACE_S": "5",
        "MANAGER_DRAIN_WINDOW_S": "3",
    }


def haproxy_config(port: int, backends: list[int]) -> str:
    servers = "\n".join(
        f"    server r{i} 127.0.0.1:{p} check inter 500ms fall 2 rise 1"
        for i, p in enumerate(backends)
    )
    return (
        "global\n    maxconn 8000\n"
        "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n"
        "    timeout server 1h\n    timeout tunnel 1h\n"
        f"frontend hubs\n    bind 127.0.0.1:{port}\n    default_backend replicas\n"
        # A draining replica answers /readyz 503 at once: no new connections go to it.
        f"backend replicas\n    balance roundrobin\n    option httpchk GET /readyz\n{servers}\n"
    )


@contextlib.asynccontextmanager
async def cluster(root: Path, n: int = 3) -> AsyncIterator[Cluster]:
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if haproxy is None:
        need_service("HAProxy not installed (Debian package haproxy; .ci/run installs it)")
    url = postgres_url()
    await asyncio.to_thread(migrate.downgrade, url, "base")
    replicas = [
        ManagerProcess(root / f"r{i}" / "data", env=replica_env(url, f"r{i}")) for i in range(n)
    ]
    balancer = None
    clients: list[httpx.AsyncClient] = []
    try:
        await asyncio.to_thread(replicas[0].start)  # migrates and bootstraps; the others join
        token = replicas[0].token()
        assert token, replicas[0].stdout
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in replicas[1:]))
        port = free_port()
        cfg = root / "haproxy.cfg"
        cfg.write_text(haproxy_config(port, [r.port for r in replicas]))
        with (root / "haproxy.log").open("w") as log:
            balancer = subprocess.Popen(
                [haproxy, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=log
            )
        headers = {"Authorization": f"Bearer {token}"}
        clients = [httpx.AsyncClient(base_url=r.url, timeout=30, headers=headers) for r in replicas]
        lb = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers)
        clients.append(lb)
        spaces = None
        for _ in range(100):  # every replica up behind the balancer, and answering
            with contextlib.suppress(httpx.TransportError):
                resp = await lb.get("/api/v1/spaces")
                if resp.status_code == 200:
                    spaces = resp.json()
                    break
            await asyncio.sleep(0.1)
        assert spaces, "the cluster did not answer /api/v1/spaces"
        space = spaces[0]["id"]
        yield Cluster(
            replicas, f"http://127.0.0.1:{port}", lb, _World(space), token, root, balancer, clients
        )
    finally:
        for c in clients:
            await c.aclose()
        if balancer is not None:
            balancer.terminate()
            balancer.wait(10)
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in replicas))
