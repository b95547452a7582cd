"""TLS from the manager's own options carries API and tunnels alike (the Hub trusts our CA
with --cpm-ssl-ca-path), and the optional separate tunnel port admits Hubs too."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.interop.peer import HubPeer
from tests.manager_process import ManagerProcess


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def _join_and_ask(manager: ManagerProcess, api: str, *extra: str) -> None:
    token = manager.token()
    assert token
    verify: ssl.SSLContext | bool = True
    if manager.scheme == "https":
        verify = ssl.create_default_context(cafile=str(manager.data_dir.parent / "cert.pem"))
    async with httpx.AsyncClient(
        base_url=manager.url, verify=verify, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        space = (await client.get("/api/v1/spaces")).json()[0]["id"]
        key = (await client.post(f"/api/v1/space/{space}/apikey", json={})).json()["accessKey"]
        peer = await HubPeer.start(
            api, space, key, "--id", "secure", "--load-interval", "500", *extra
        )
        try:
            await peer.wait_for(event="control_opened")
            resp = await peer.request("GET", f"/api/v1/cpm/{space}/api/v1/version")
            assert resp["status"] == 200
            for _ in range(50):
                hubs = (await client.get(f"/api/v1/space/{space}/api/v1/list")).json()
                if hubs and hubs[0]["healthy"]:
                    break
                await asyncio.sleep(0.1)
            assert hubs[0]["id"] == "secure" and hubs[0]["healthy"]
            version = await client.get(f"/api/v1/space/{space}/api/v1/sth/secure/api/v1/version")
            assert version.status_code == 200
        finally:
            await peer.stop()


@pytest.mark.parametrize("via_tunnel_port", [False, True])
async def test_tls_for_api_and_tunnels(tmp_path: Path, monkeypatch, via_tunnel_port: bool):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    cert, key = self_signed(tmp_path)
    tunnel_port = free_port()
    args = ("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    if via_tunnel_port:
        args += ("--tunnel-port", str(tunnel_port))
    manager = ManagerProcess(tmp_path / "data", args=args, scheme="https")
    await asyncio.to_thread(manager.start)
    try:
        api = f"https://127.0.0.1:{tunnel_port if via_tunnel_port else manager.port}"
        await _join_and_ask(manager, api, "--cpm-ssl-ca-path", str(cert))
    finally:
        await asyncio.to_thread(manager.stop)


async def test_plain_separate_tunnel_port(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    tunnel_port = free_port()
    manager = ManagerProcess(tmp_path / "data", args=("--tunnel-port", str(tunnel_port)))
    await asyncio.to_thread(manager.start)
    try:
        await _join_and_ask(manager, f"http://127.0.0.1:{tunnel_port}")
    finally:
        await asyncio.to_thread(manager.stop)
