"""What carries the tunnel: big transfers both ways through manager + WebSocket + connector
(checksummed), wss:// with --ca-file, and an HTTP proxy from HTTP_PROXY / NO_PROXY."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually
from tests.connector.fakehub import FakeHub, pattern
from tests.connector.helpers import (
    Host018,
    connector_running,
    hub_entry,
    is_healthy,
    options_at,
    options_for,
)
from tests.interop.test_tls_and_tunnel_port import self_signed
from tests.manager_process import ManagerProcess
from tests.running import RunningManager

MiB = 1 << 20


@pytest.fixture
async def fake_hub() -> AsyncIterator[FakeHub]:
    hub = await FakeHub().start()
    try:
        yield hub
    finally:
        await hub.stop()


async def test_64_mib_each_way_arrive_intact(manager: RunningManager, fake_hub: FakeHub):
    key = await manager.new_key()
    size = 64 * MiB
    async with connector_running(options_for(manager, key, fake_hub.url, hub_id="big")):
        await eventually(lambda: is_healthy(manager, "big"))
        base = f"/api/v1/space/{manager.world.space_id}/api/v1/sth/big/api/v1"
        digest, got = hashlib.sha256(), 0
        async with manager.client.stream("GET", f"{base}/echo/bytes/{size}") as resp:
            assert resp.status_code == 200
            async for chunk in resp.aiter_raw():
                digest.update(chunk)
                got += len(chunk)
        assert got == size and digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()

        async def body() -> AsyncIterator[bytes]:
            block = pattern(MiB)
            for _ in range(size // MiB):
                yield block

        resp = await manager.client.post(
            f"{base}/echo/count", content=body(), headers={"content-length": str(size)}
        )
        assert resp.status_code == 200, resp.text
        expected = hashlib.sha256(pattern(MiB) * (size // MiB)).hexdigest()
        assert resp.json() == {"bytes": size, "sha256": expected}


async def test_hub_events_reach_the_space(manager: RunningManager, fake_hub: FakeHub):
    key = await manager.new_key()
    async with connector_running(options_for(manager, key, fake_hub.url, hub_id="ev")):
        await eventually(lambda: is_healthy(manager, "ev"))
        fake_hub.sequences.append({"id": "s1", "config": {"name": "x"}, "instances": []})
        fake_hub.instances.append({"id": "i1", "sequence": "s1", "status": "running"})
        fake_hub.topics.append({"topicName": "names", "contentType": "text/plain"})

        async def seen() -> bool:
            entry = await hub_entry(manager, "ev")
            return bool(
                entry
                and entry["sequences"] == ["s1"]
                and entry["instances"] == ["i1"]
                and entry["topics"] == ["names"]
            )

        await eventually(seen, what="sequence, instance and topic in the Space")
        fake_hub.instances.clear()
        fake_hub.topics.clear()

        async def cleared() -> bool:
            entry = await hub_entry(manager, "ev")
            return bool(entry and entry["instances"] == [] and entry["topics"] == [])

        await eventually(cleared, what="instance and topic gone")


async def test_wss_with_a_ca_file(
    host018: Host018, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    cert, key_file = self_signed(tmp_path)
    manager = ManagerProcess(
        tmp_path / "data",
        scheme="https",
        args=("--ssl-certfile", str(cert), "--ssl-keyfile", str(key_file)),
    )
    await asyncio.to_thread(manager.start)
    try:
        token = manager.token()
        verify = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(
            base_url=manager.url, verify=verify, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            space = (await client.get("/api/v1/spaces")).json()[0]["id"]
            access = (await client.post(f"/api/v1/space/{space}/apikey", json={})).json()

            options = options_at(
                manager.url, space, access["accessKey"], host018.url, hub_id="tls-hub",
                ca_file=str(cert),
            )  # fmt: skip
            assert options.url.startswith("wss://")

            async def joined() -> bool:
                hubs = (await client.get(f"/api/v1/space/{space}/api/v1/list")).json()
                return any(h["id"] == "tls-hub" and h["healthy"] for h in hubs)

            async with connector_running(options):
                await eventually(joined, what="Hub joined over wss://")
                resp = await client.get(f"/api/v1/space/{space}/api/v1/sth/tls-hub/api/v1/version")
                assert resp.json() == {"version": "0.18.7"}

            untrusted = options_at(
                manager.url, space, access["accessKey"], host018.url, hub_id="no-ca"
            )
            caplog.clear()
            async with connector_running(untrusted) as connector:
                # The system store does not know our CA: the TLS handshake fails, and the
                # connector keeps retrying (twice seen here) instead of giving up.
                async def refused_twice() -> bool:
                    return len(_disconnects(caplog)) >= 2

                await eventually(refused_twice, what="two failed attempts")
                assert not connector.connected.is_set() and connector.stop_reason is None
            failures = _disconnects(caplog)
            assert all("CERTIFICATE_VERIFY_FAILED" in f for f in failures), failures
            hubs = (await client.get(f"/api/v1/space/{space}/api/v1/list")).json()
            assert "no-ca" not in [h["id"] for h in hubs]
    finally:
        await asyncio.to_thread(manager.stop)


def _disconnects(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The connector's "disconnected (<why>)" warnings, one per failed attempt."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "manager.connector" and r.getMessage().startswith("disconnected (")
    ]


@contextlib.asynccontextmanager
async def connect_proxy() -> AsyncIterator[tuple[str, list[str]]]:
    """A minimal HTTP CONNECT proxy that records its targets."""
    targets: list[str] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ")
        targets.append(f"{method} {target}")
        host, port = target.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        writer.close()
        up_writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", targets


async def test_http_proxy_from_the_environment(manager: RunningManager, fake_hub: FakeHub):
    key = await manager.new_key()
    port = manager.svc.settings.port
    async with connect_proxy() as (proxy, targets):
        options = options_for(manager, key, fake_hub.url, hub_id="proxied")
        async with connector_running(options, environ={"HTTP_PROXY": proxy}) as connector:
            assert connector.proxy == proxy
            await eventually(lambda: is_healthy(manager, "proxied"), what="joined via the proxy")
        assert targets == [f"CONNECT 127.0.0.1:{port}"]

        bypass = {"HTTP_PROXY": proxy, "NO_PROXY": "localhost,127.0.0.1"}
        options = options_for(manager, key, fake_hub.url, hub_id="direct")
        async with connector_running(options, environ=bypass) as connector:
            assert connector.proxy is None
            await eventually(lambda: is_healthy(manager, "direct"))
        assert len(targets) == 1
