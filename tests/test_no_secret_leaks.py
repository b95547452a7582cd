"""The whole API and tunnel flow at debug log level leaves no key, token, proof or server
secret in the manager's logs or its database file, in both log formats (`json` also: every
line is one JSON object, and request ids reach the Hub). Keys and tokens are made both
through the API and with the CLI while the server runs.

A key proof (the `Digest cnonce="..."` value a Hub sends) counts as a secret: a Hub resends
the same one on every reconnect, so a logged proof lets anyone join as that Hub until the
key is revoked."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from manager.hubs.keys import parse_proof
from tests.interop.peer import NODE_DIR, HubPeer, require_node
from tests.manager_process import BIN, ManagerProcess
from tests.tunnel.rawhub import RawHub, connect_head

MAKE_PROOF_JS = "process.stdout.write(require('@scramjet/utility').generateSTHKey(process.argv[1]))"


def sth_proof(key: str) -> str:
    """A key proof made by the STH's own code, as a real Hub sends it."""
    made = subprocess.run(
        [require_node(), "-e", MAKE_PROOF_JS, key],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip()


def proof_secrets(proof: str) -> list[str]:
    """The whole proof and its digest part (the rest is random bytes and the key's prefix)."""
    return [proof, parse_proof(proof).digest]


def cli(data_dir: Path, *args: str) -> str:
    """`space-manager` beside the running server, on its data dir; its stdout."""
    done = subprocess.run(
        [str(BIN), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_no_secrets_in_logs_or_database(tmp_path: Path, monkeypatch, log_format: str):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    monkeypatch.delenv("MANAGER_SECRET", raising=False)
    env = {"MANAGER_LOG_LEVEL": "debug", "MANAGER_LOG_FORMAT": log_format}
    manager = ManagerProcess(tmp_path / "data", env=env)
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
            org = sp.rsplit("-", 1)[0]
            cli_token = (
                await asyncio.to_thread(cli, manager.data_dir, "token", "create", "--org", org)
            ).strip()
            made = await asyncio.to_thread(
                cli, manager.data_dir, "access-key", "create", "--space", sp
            )
            cli_key = made.splitlines()[0].strip()
            assert cli_key.startswith("SCP-") and cli_token.count(".") == 2, (cli_key, cli_token)
            assert (
                await client.get("/api/v1/spaces", headers={"Authorization": "Bearer " + cli_token})
            ).status_code == 200
            secrets_seen += [cli_token, cli_token.split(".")[2], cli_key, cli_key[16:]]
            secrets_seen += keys + [k[16:] for k in keys]
            # The Node peer sends a proof made by @scramjet/utility; the raw Hub, one of ours.
            peer_proof = await asyncio.to_thread(sth_proof, keys[0])
            proofs_file = tmp_path / "proofs.json"
            proofs_file.write_text(json.dumps([peer_proof]))
            head = connect_head(sp, keys[1], hub_id="raw")
            found = re.search(rb'Authorization: Digest cnonce="([^"]+)"', head)
            assert found is not None, head
            raw_proof = found.group(1).decode()
            secrets_seen += proof_secrets(peer_proof) + proof_secrets(raw_proof)
            peer = await HubPeer.start(
                manager.url,
                sp,
                keys[0],
                "--id",
                "leaky",
                "--load-interval",
                "300",
                "--proofs",
                str(proofs_file),
            )
            await peer.wait_for(event="control_opened")  # the proof above was accepted
            raw = await RawHub.open(manager.port, head)
            assert raw.status == 200  # and so was this one
            raw.start()
            await raw.wait_control()
            await client.get(f"/api/v1/space/{sp}/api/v1/sth/leaky/api/v1/version")
            echoed = await client.get(
                f"/api/v1/space/{sp}/api/v1/sth/leaky/api/v1/echo/headers",
                headers={"x-request-id": "leak-check-1"},
            )
            assert echoed.json()["headers"]["x-request-id"] == "leak-check-1"
            assert echoed.headers["x-request-id"] == "leak-check-1"
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
    if log_format == "json":
        lines = [json.loads(line) for line in logs.splitlines() if line.strip()]
        assert {"time", "level", "logger", "message", "replica"} <= set(lines[0])
        assert any(line.get("request_id") == "leak-check-1" for line in lines)
        assert any(line.get("hub") == "leaky" for line in lines)
    assert token in announcement and all(k not in announcement for k in keys)
    database = b"".join(p.read_bytes() for p in manager.data_dir.glob("manager.db*"))
    for value in secrets_seen:
        assert value not in logs, "a secret is in the logs"
        assert value.encode() not in database, "a secret is in the database"
