"""Clients that stall: a request head that never completes is dropped (plain HTTP and a
WebSocket upgrade alike), and a Space topic reader that never reads pauses the producer
instead of growing the manager's buffers."""

from __future__ import annotations

import asyncio
import time

import pytest

import manager.web.http_protocol as http_protocol
from tests.running import RunningManager


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\n",
        b"GET /api/v1/o/s/ HTTP/1.1\r\nUpgrade: websocket\r\n",
        b"G",
    ],
)
async def test_incomplete_heads_are_dropped(manager: RunningManager, monkeypatch, partial: bytes):
    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_S", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(partial)
    await writer.drain()
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(1000), 5) == b""  # closed, nothing answered
    assert time.monotonic() - started < 4
    writer.close()
    await writer.wait_closed()
    assert (await manager.client.get("/api/v1/version")).status_code == 200


async def test_a_topic_reader_that_never_reads_pauses_the_producer(manager: RunningManager):
    space = manager.world.space_id
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(
        f"GET /api/v1/space/{space}/api/v1/topic/stall HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {manager.world.admin.token}\r\n"
        "content-type: application/octet-stream\r\n\r\n".encode()
    )
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")  # the stream is open; from now on we never read

    sent = 0

    async def body():
        nonlocal sent
        chunk = b"x" * 65536
        for _ in range(2000):  # up to 128 MiB, far more than any buffer on the way
            sent += len(chunk)
            yield chunk

    post = asyncio.ensure_future(
        manager.client.post(
            f"/api/v1/space/{space}/api/v1/topic/stall",
            content=body(),
            headers={"content-type": "application/octet-stream"},
        )
    )
    await asyncio.sleep(3)
    assert not post.done(), "the producer was not held back"
    topic = manager.svc.topics.get(space, "stall")
    assert topic is not None
    queued = sum(c.queue.qsize() for c in topic.consumers)
    assert queued <= 16
    assert sent < 64 * 1024 * 1024  # socket buffers, not the manager, hold what was sent
    post.cancel()
    writer.close()
