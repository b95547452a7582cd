"""The Sequence store: upload, list, delete, clear; a Hub fetches a stored Sequence when asked
to start it (spec §4.2 R1, as the STH does); a Space-level start picks a Hub by tag."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import time
from collections.abc import AsyncIterator

import pytest

from tests.interop.packages import hello_package
from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager


def space(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/{path}"


@pytest.fixture
async def hubs(manager: RunningManager) -> AsyncIterator[dict[str, HubPeer]]:
    key = await manager.new_key()
    peers = {
        hub_id: await join_hub(manager, hub_id, "--tags", tags, key=key, healthy=True)
        for hub_id, tags in (("cpu-hub", "cpu"), ("gpu-hub", "gpu,big"))
    }
    yield peers
    for peer in peers.values():
        await peer.stop()


async def test_store_round_trip(manager: RunningManager):
    resp = await manager.client.put(space(manager, "s3"), content=hello_package())
    assert resp.status_code == 200, resp.text
    first = resp.json()
    assert first["name"] == "hello-seq" and first["version"] == "1.0.0" and len(first["id"]) == 36
    resp = await manager.client.put(
        space(manager, "s3/my-seq"), content=hello_package("named", "2.0.0")
    )
    assert resp.json()["id"] == "my-seq" and resp.json()["name"] == "named"

    listed = (await manager.client.get(space(manager, "s3"))).json()
    assert [c["id"] for c in listed] == [first["id"], "my-seq"]
    everything = (await manager.client.get(space(manager, "all_sequences"))).json()
    assert {s["id"] for s in everything if s["location"] == "store"} == {first["id"], "my-seq"}

    package = await manager.client.get(space(manager, "s3/undefined/my-seq.tar.gz"))
    assert package.status_code == 200 and package.content == hello_package("named", "2.0.0")

    assert (await manager.client.delete(space(manager, "s3/my-seq"))).status_code == 200
    resp = await manager.client.delete(space(manager, "s3/my-seq"))
    assert resp.status_code == 404 and "error" in resp.json()
    resp = await manager.client.delete(space(manager, "store"))
    assert resp.json() == {"removed": 1}
    assert (await manager.client.get(space(manager, "s3"))).json() == []


def _tar_without_manifest() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("index.js")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"//"))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"", 422), (b"not a tarball at all", 422), (_tar_without_manifest(), 422)],
)
async def test_bad_packages(manager: RunningManager, body: bytes, status: int):
    resp = await manager.client.put(space(manager, "s3"), content=body)
    assert resp.status_code == status and "error" in resp.json()
    assert (await manager.client.get(space(manager, "s3"))).json() == []


async def test_oversized_package(manager: RunningManager):
    manager.svc.store_packages.max_bytes = 1000
    resp = await manager.client.put(space(manager, "s3"), content=b"\x1f\x8b" + b"\0" * 5000)
    assert resp.status_code == 413 and "limit" in resp.json()["error"]
    assert not [p for p in (manager.svc.settings.data_dir / "store").rglob("*") if p.is_file()]


async def test_a_stored_sequence_is_handed_to_the_hub_on_start(manager: RunningManager, hubs):
    """The manager uploads the package before the start (STH 1.0.1 cannot fetch it), and
    still serves the Hub's own store fetch (hub-protocol §4.2 R1) for Hubs that can."""
    package = hello_package()
    stored = (await manager.client.put(space(manager, "s3/stored-one"), content=package)).json()
    resp = await manager.client.post(
        space(manager, f"sth/cpu-hub/api/v1/sequence/{stored['id']}/start"),
        json={"appConfig": {}, "args": []},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == "success"
    instance = resp.json()["id"]
    deadline = time.monotonic() + 2
    while True:
        seqs = (await manager.client.get(space(manager, "sequences"))).json()
        if any(s["location"] == "cpu-hub" and instance in s["instances"] for s in seqs):
            break
        assert time.monotonic() < deadline, seqs
        await asyncio.sleep(0.05)
    assert len(seqs) == 1 and seqs[0]["id"] != "stored-one"  # the Hub's own id for its copy

    fetched = await hubs["cpu-hub"].request(
        "GET",
        f"/api/v1/cpm/{manager.world.space_id}/api/v1/s3/undefined/stored-one.tar.gz",
        binary=True,
    )
    assert fetched["status"] == 200
    assert fetched["sha256"] == hashlib.sha256(package).hexdigest()


async def test_space_level_start_by_tag(manager: RunningManager, hubs):
    await manager.client.put(space(manager, "s3/tagged"), content=hello_package())
    resp = await manager.client.post(
        space(manager, "sequence/tagged/start"), json={"tags": ["gpu"], "appConfig": {"x": 1}}
    )
    assert resp.status_code == 200, resp.text
    started = resp.json()
    assert started["hubId"] == "gpu-hub" and started["result"] == "success"
    info = await manager.client.get(space(manager, f"sth/gpu-hub/api/v1/instance/{started['id']}"))
    assert info.json()["appConfig"] == {"x": 1}

    resp = await manager.client.post(
        space(manager, "sequence/tagged/start"), json={"tags": ["tpu"]}
    )
    assert resp.status_code == 503 and "No healthy Hub" in resp.json()["error"]
    resp = await manager.client.post(
        space(manager, "sequence/nowhere/start"), json={"hub": "cpu-hub"}
    )
    assert resp.status_code == 404
