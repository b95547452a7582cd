"""Hostile or broken input on the tunnel port: each bad tunnel is closed on its own while the
manager, its API and a well-behaved Hub (the real-packages Node peer) carry on."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator

import pytest

from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager
from tests.tunnel.rawhub import RawHub, connect_head, join


@pytest.fixture
async def good_hub(manager: RunningManager) -> AsyncIterator[HubPeer]:
    peer = await join_hub(manager, "good", "--load-interval", "500")
    yield peer
    await peer.stop()


async def _still_fine(manager: RunningManager) -> None:
    resp = await manager.client.get(
        f"/api/v1/space/{manager.world.space_id}/api/v1/sth/good/api/v1/version"
    )
    assert resp.status_code == 200, resp.text
    hubs = {h["id"]: h for h in await manager.hubs()}
    assert hubs["good"]["isConnectionActive"] is True


async def _raw(manager: RunningManager, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 15)
    finally:
        writer.close()
        await writer.wait_closed()


async def _wait_inactive(manager: RunningManager, hub_id: str) -> dict:
    deadline = time.monotonic() + 5
    while (info := await manager.hub(hub_id))["isConnectionActive"] or not info.get(
        "disconnectReason"
    ):
        assert time.monotonic() < deadline, f"{hub_id} still active: {info}"
        await asyncio.sleep(0.05)
    return info


def _port(manager: RunningManager) -> int:
    return manager.svc.settings.port


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE GARBAGE\r\n\r\n",
        b"\x00\x01\x02\x03" * 100 + b"\r\n\r\n",
        b"CONNECT \x00\x01 nonsense\r\n\r\n",
        b"CONNECT /api/v1/a/b/ HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"CONNECT /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
async def test_garbage_heads_are_refused(manager: RunningManager, good_hub: HubPeer, data: bytes):
    answer = await _raw(manager, data)
    assert answer.startswith(b"HTTP/1.1 4"), answer[:100]
    await _still_fine(manager)


async def test_connect_without_a_key_or_with_an_unknown_prefix(
    manager: RunningManager, good_hub: HubPeer
):
    space = manager.world.space_id
    assert (await _raw(manager, connect_head(space, None))).startswith(b"HTTP/1.1 403")
    unknown = "SCP-ak-zzzzzzzzzZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"
    assert (await _raw(manager, connect_head(space, unknown))).startswith(b"HTTP/1.1 403")
    await _still_fine(manager)


async def test_non_latin1_header_bytes_are_accepted(manager: RunningManager):
    key = await manager.new_key()
    head = connect_head(
        manager.world.space_id, key, hub_id="utf8", extra=b"x-extra: \xe2\x9c\x93 \xff\r\n"
    )
    hub = await RawHub.open(_port(manager), head)
    hub.start()
    try:
        assert hub.status == 200
        await hub.wait_control()
        deadline = time.monotonic() + 5  # the control channel opens just before registration
        while manager.svc.registry.get(manager.world.space_id, "utf8") is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        info = await manager.hub("utf8")
        assert info["isConnectionActive"] is True
    finally:
        await hub.close()


async def _joined(manager: RunningManager, hub_id: str) -> RawHub:
    hub = await join(manager, await manager.new_key(hub_id), hub_id)
    assert hub.status == 200
    return hub


BAD_FRAMES = {
    "unknown type": struct.pack(">IB", 1, 9),
    "short STATUS": struct.pack(">IBI", 5, 2, 0),
    "2 GiB frame": struct.pack(">I", 0x7FFFFFFF),
    "status before handshake": struct.pack(">IBI", 5, 0, 77)
    + struct.pack(">IBIII", 13, 2, 77, 1, 1),
    "empty payload": struct.pack(">IBII", 9, 4, 0, 0) + struct.pack(">I", 0),
    "repeated handshake": struct.pack(">IBII", 9, 1, 0x80000000, 16384),
}


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_bad_frames_close_only_that_tunnel(
    manager: RunningManager, good_hub: HubPeer, name: str
):
    hub = await _joined(manager, f"bad-{name.replace(' ', '-')}")
    hub.send_raw(BAD_FRAMES[name])
    await asyncio.wait_for(hub.closed.wait(), 5)
    await hub.close()
    info = await _wait_inactive(manager, f"bad-{name.replace(' ', '-')}")
    assert "protocol error" in info["disconnectReason"] or "lost" in info["disconnectReason"]
    await _still_fine(manager)


async def test_frames_for_unknown_channels_are_ignored(manager: RunningManager, good_hub: HubPeer):
    hub = await _joined(manager, "lenient")
    try:
        live = manager.svc.registry.get(manager.world.space_id, "lenient")
        assert live is not None
        session = live.link.session  # type: ignore[attr-defined]
        hub.send_raw(struct.pack(">IBII", 9, 4, 77, 5) + struct.pack(">I", 5) + b"hello")
        hub.send_raw(struct.pack(">IBIII", 13, 3, 78, 1, 1))  # FINISHED_STATUS
        load = {"avgLoad": 0.5, "currentLoad": 0.5, "memFree": 2, "memUsed": 2, "fsSize": []}
        hub.send_control(7001, load)  # unlike the raw Hub's first LOAD (avgLoad 0.1)
        # This LOAD came after the stray frames on the same socket: once it is in, the manager
        # has read past them, and the tunnel must still be there, with no channel made up.
        deadline = time.monotonic() + 5
        while (live.state.load or {}).get("avgLoad") != 0.5:
            assert not session.is_closed, f"tunnel closed: {session.close_reason}"
            assert time.monotonic() < deadline, "the LOAD after the stray frames never arrived"
            await asyncio.sleep(0.02)
        assert not session.is_closed and not hub.closed.is_set()
        assert manager.svc.registry.get(manager.world.space_id, "lenient") is live
        assert not {77, 78} & set(session.channels)
        assert (await manager.hub("lenient"))["healthy"] is True
    finally:
        await hub.close()


async def test_data_beyond_our_window_closes_the_tunnel(manager: RunningManager, good_hub: HubPeer):
    hub = await _joined(manager, "flooder")
    assert hub.control is not None
    window = manager.svc.registry.get(manager.world.space_id, "flooder").link.session.window  # type: ignore[attr-defined]
    # Pretend the manager granted more than it did: raise our own allowance, then flood.
    state = hub.mux._channels[hub.control]  # test reaches into the Hub-side mux on purpose
    state.allowance = window * 4
    hub.mux.send(hub.control, b"x" * (window * 2))
    for frame in hub.mux.data_to_send():
        hub.send_raw(frame)
    await asyncio.wait_for(hub.closed.wait(), 5)
    await hub.close()
    await _still_fine(manager)


async def test_truncated_frame_then_disconnect(manager: RunningManager, good_hub: HubPeer):
    hub = await _joined(manager, "truncated")
    hub.send_raw(struct.pack(">IBII", 9, 4, hub.control or 0, 100)[:7])
    await hub.close()
    await _wait_inactive(manager, "truncated")
    await _still_fine(manager)


async def test_invalid_control_lines_are_skipped(manager: RunningManager, good_hub: HubPeer):
    hub = await _joined(manager, "chatty")
    for line in (
        b"not json\n",
        b'{"an":"object"}\n',
        b"[]\n",
        b'["7001", {}]\n',
        b"\xff\xfe\n",
        b"[7004, 5]\n",
        b'[7005, {"instance": 3}]\n',
        b"[99999, {}]\n",
    ):
        hub.send_control_raw(line)
    hub.send_control(7004, {"sequences": [{"id": "s1", "config": {"name": "ok"}}]})
    await asyncio.sleep(0.5)
    assert not hub.closed.is_set()
    seqs = (
        await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/sequences")
    ).json()
    assert [s["id"] for s in seqs if s["location"] == "chatty"] == ["s1"]
    await hub.close()
    await _still_fine(manager)


async def test_a_head_that_never_completes_is_dropped(manager: RunningManager, good_hub: HubPeer):
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(manager))
    writer.write(b"CONNECT /api/v1/a/b/ HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(1000), 15)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()
    await writer.wait_closed()
    await _still_fine(manager)


def _proxy_url(manager: RunningManager, hub_id: str, path: str = "version") -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/sth/{hub_id}/api/v1/{path}"


async def test_a_hub_that_accepts_no_channel_gives_504(manager: RunningManager, good_hub: HubPeer):
    gate = manager.svc.gate  # read when a Hub is admitted
    gate.settings = gate.settings.with_overrides(channel_open_timeout_s=1.0)
    hub = await _joined(manager, "mute")
    hub.mute = True
    started = time.monotonic()
    resp = await manager.client.get(_proxy_url(manager, "mute"))
    assert resp.status_code == 504
    assert resp.json() == {"error": "Hub mute did not accept a channel in time"}
    assert time.monotonic() - started < 5
    await hub.close()
    await _still_fine(manager)


async def test_a_hub_answering_garbage_gives_502(manager: RunningManager, good_hub: HubPeer):
    hub = await _joined(manager, "liar")
    hub.garbage = True
    resp = await manager.client.get(_proxy_url(manager, "liar"))
    assert resp.status_code == 502
    assert resp.json()["error"].startswith("Invalid response from Hub liar")
    await hub.close()
    await _still_fine(manager)


async def test_a_hub_that_never_reads_is_dropped_and_requests_end(
    manager: RunningManager, good_hub: HubPeer
):
    manager.svc.registry.healthy_after_s = 2.0
    manager.svc.supervisor.sweep_s = 0.5
    hub = await _joined(manager, "deaf")
    hub.deaf.set()

    async def upload():
        chunk = b"x" * 65536
        for _ in range(64):
            yield chunk

    resp = await manager.client.post(_proxy_url(manager, "deaf", "echo/count"), content=upload())
    assert resp.status_code in (502, 503), resp.text
    info = await _wait_inactive(manager, "deaf")
    assert "no LOAD" in info["disconnectReason"]
    await hub.close()
    await _still_fine(manager)
