"""The whole API and tunnel flow at debug log level leaves no key, token, proof or server
secret in the manager's logs or its database file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.interop.peer import HubPeer
from tests.manager_process import ManagerProcess
from tests.tunnel.rawhub import RawHub, connect_head


async def test_no_secrets_in_logs_or_database(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    monkeypatch.delenv("MANAGER_SECRET", raising=False)
    manager = ManagerProcess(tmp_path / "data", env={"MANAGER_LOG_LEVEL": "debug"})
    await asyncio.to_thread(manager.start)
    token = manager.token()
    assert token
    secrets_seen: list[str] = [token, token.split(".")[2]]
    try:
        async with httpx.AsyncClient(
            base_url=manager.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            sp = (await client.get("/api/v1/spaces")).json()[0]["id"]
            keys = [
                (await client.post(f"/api/v1/space/{sp}/apikey", json={"description": d})).json()[
                    "accessKey"
                ]
                for d in ("a", "b")
            ]
            secrets_seen += keys + [k[16:] for k in keys]
            peer = await HubPeer.start(
                manager.url, sp, keys[0], "--id", "leaky", "--load-interval", "300"
            )
            await peer.wait_for(event="control_opened")
            raw = await RawHub.open(
                manager.port,
                connect_head(sp, keys[1], hub_id="raw").replace(
                    b"Authorization: Digest", b"Authorization: Digest", 1
                ),
            )
            raw.start()
            await raw.wait_control()
            await client.get(f"/api/v1/space/{sp}/api/v1/sth/leaky/api/v1/version")
            await client.get("/api/v1/spaces", headers={"Authorization": "Bearer " + keys[0]})
            await client.delete(f"/api/v1/space/{sp}/apikey", headers={"x-revoke": keys[0]})
            await peer.wait_for(event="abandoned")
            await raw.close()
            await peer.stop()
    finally:
        await asyncio.to_thread(manager.stop)
    secrets_seen.append((manager.data_dir / "server-secret").read_text().strip())

    # stdout carries only the one-time announcement of the bootstrap token (by design);
    # everything the manager logs goes to stderr.
    announcement = manager.stdout
    logs = manager.logs()
    assert "DEBUG" in logs
    assert token in announcement and all(k not in announcement for k in keys)
    database = b"".join(p.read_bytes() for p in manager.data_dir.glob("manager.db*"))
    for value in secrets_seen:
        assert value not in logs, "a secret is in the logs"
        assert value.encode() not in database, "a secret is in the database"
