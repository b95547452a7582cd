"""Behind nginx (the Debian package, an ordinary L7 reverse proxy): the API works, a Hub
joins through `space-manager connect` over a WebSocket and answers proxied calls, while
the CONNECT tunnel a Hub opens itself is refused by nginx — the reason the connector exists."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import bearer, eventually, free_port, need_service
from tests.connector.helpers import Host018, connector_running, is_healthy, options_for
from tests.running import RunningManager

pytestmark = pytest.mark.interop

CONFIG = """
daemon off;
user root;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        need_service("nginx not found (Debian package `nginx`; .ci/run installs it)")
    return binary


@pytest.fixture(scope="module", autouse=True)
def nginx() -> str:
    """Checked before the other fixtures start a manager and a Hub for nothing."""
    return nginx_binary()


@contextlib.asynccontextmanager
async def nginx_in_front(upstream: int, tmp: Path) -> AsyncIterator[str]:
    binary = nginx_binary()
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(CONFIG.format(tmp=tmp, port=port, upstream=upstream))
    proc = await asyncio.create_subprocess_exec(
        binary, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if proc.returncode is not None:
                raise RuntimeError((tmp / "error.log").read_text()[-2000:])
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                await writer.wait_closed()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def test_api_and_a_websocket_hub_through_nginx(
    manager: RunningManager, host018: Host018, tmp_path: Path
):
    async with nginx_in_front(manager.svc.settings.port, tmp_path / "nginx") as front:
        async with httpx.AsyncClient(
            base_url=front, headers=bearer(manager.world.admin), timeout=30
        ) as client:
            spaces = await client.get("/api/v1/spaces")
            assert spaces.status_code == 200
            assert manager.world.space_id in [s["id"] for s in spaces.json()]

            key = await manager.new_key()
            options = options_for(manager, key, host018.url, platform_api=front, hub_id="ng")
            async with connector_running(options):
                await eventually(lambda: is_healthy(manager, "ng"), what="Hub joined via nginx")
                space = manager.world.space_id
                resp = await client.get(f"/api/v1/space/{space}/api/v1/sth/ng/api/v1/version")
                assert resp.status_code == 200 and resp.json() == {"version": "0.18.7"}
        access = (tmp_path / "nginx" / "access.log").read_text()
        org = manager.world.space_id.rsplit("-", 1)[0]
        tunnel_lines = [line for line in access.splitlines() if f"/api/v1/{org}/" in line]
        assert tunnel_lines and all('" 101 ' in line for line in tunnel_lines), access[-2000:]


async def test_a_connect_tunnel_does_not_pass_nginx(manager: RunningManager, tmp_path: Path):
    space = manager.world.space_id
    target = f"/api/v1/{space.rsplit('-', 1)[0]}/{space}/"
    async with nginx_in_front(manager.svc.settings.port, tmp_path / "nginx") as front:
        host, port = front.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        await writer.wait_closed()
    status = int(status_line.split()[1])
    assert 400 <= status < 500, status_line  # nginx refuses the method itself (405)
