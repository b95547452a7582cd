"""WebSocket tunnels carry the same BPMux stream: a Python Hub over `websockets` joins with a
Bearer access key or a Digest proof, and refusals come as close codes."""

from __future__ import annotations

import asyncio
import json
import time

import h11
import pytest
import websockets

from manager.hubs.keys import make_proof
from manager.mux import ChannelOpened, DataReceived, Mux
from tests.running import RunningManager


def ws_url(manager: RunningManager) -> str:
    space = manager.world.space_id
    org = space.rsplit("-", 1)[0]
    return f"ws://127.0.0.1:{manager.svc.settings.port}/api/v1/{org}/{space}/"


class WsHub:
    """Serves the control channel like a Hub, over a WebSocket."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.mux = Mux(window=65536, high_channels=False)
        self.http: dict[int, h11.Connection] = {}
        self.control: int | None = None
        self.messages: list[list] = []

    async def run(self) -> None:
        async for message in self.ws:
            assert isinstance(message, bytes)
            self.mux.receive_data(message)
            for ev in self.mux.events_received():
                if isinstance(ev, ChannelOpened):
                    self.http[ev.channel] = h11.Connection(h11.SERVER)
                elif isinstance(ev, DataReceived):
                    self.mux.consumed(ev.channel, len(ev.data))
                    self._http(ev.channel, ev.data)
            await self.flush()

    def _http(self, channel: int, data: bytes) -> None:
        conn = self.http[channel]
        conn.receive_data(data)
        while (ev := conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            if isinstance(ev, h11.Request):
                self.control = channel
                head = conn.send(
                    h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")])
                )
                self.mux.send(channel, head or b"")
                self.send(
                    7001, {"avgLoad": 0, "currentLoad": 0, "memFree": 5, "memUsed": 5, "fsSize": []}
                )
            elif isinstance(ev, h11.Data):
                for line in bytes(ev.data).splitlines():
                    if line.strip():
                        self.messages.append(json.loads(line))

    def send(self, code: int, payload: object) -> None:
        assert self.control is not None
        line = json.dumps([code, payload]).encode() + b"\n"
        self.mux.send(self.control, f"{len(line):x}\r\n".encode() + line + b"\r\n")

    async def flush(self) -> None:
        frames = self.mux.data_to_send()
        if frames:
            await self.ws.send(b"".join(frames))


async def _wait(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("auth", ["bearer", "digest"])
async def test_websocket_hub_joins_and_gets_an_id(manager: RunningManager, auth: str):
    key = await manager.new_key()
    header = f"Bearer {key}" if auth == "bearer" else f'Digest cnonce="{make_proof(key)}"'
    async with websockets.connect(
        ws_url(manager),
        additional_headers={
            "Authorization": header,
            "x-sth-id": "",
            "x-sth-description": "ws",
            "x-sth-tags": '["ws"]',
        },
    ) as ws:
        hub = WsHub(ws)
        task = asyncio.ensure_future(hub.run())
        await _wait(lambda: _has_id(hub))
        hub_id = next(m[1]["id"] for m in hub.messages if m[0] == 7000)

        async def healthy() -> bool:
            return any(h["id"] == hub_id and h["healthy"] for h in await manager.hubs())

        await _wait(healthy)
        info = await manager.hub(hub_id)
        assert info["description"] == "ws" and info["tags"] == ["ws"]
        task.cancel()

    async def gone() -> bool:
        return not (await manager.hub(hub_id))["isConnectionActive"]

    await _wait(gone)


async def _has_id(hub: WsHub) -> bool:
    return any(m[0] == 7000 for m in hub.messages)


async def test_bad_key_gets_close_4403(manager: RunningManager):
    await manager.new_key()
    async with websockets.connect(
        ws_url(manager), additional_headers={"Authorization": "Bearer nope"}
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as err:
            await ws.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 4403


async def test_text_messages_close_the_tunnel(manager: RunningManager):
    key = await manager.new_key()
    async with websockets.connect(
        ws_url(manager), additional_headers={"Authorization": f"Bearer {key}"}
    ) as ws:
        await ws.send("hello")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await ws.recv()
    resp = await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/version")
    assert resp.status_code == 200


async def test_oversized_message_is_refused(manager: RunningManager):
    key = await manager.new_key()
    with pytest.raises(websockets.ConnectionClosed) as err:
        async with websockets.connect(
            ws_url(manager), additional_headers={"Authorization": f"Bearer {key}"}, max_size=None
        ) as ws:
            await ws.send(b"\0" * (5 * 1024 * 1024))
            while True:
                await ws.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 1009
    resp = await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/version")
    assert resp.status_code == 200
