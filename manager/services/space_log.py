"""The Space's `/log`: every connected Hub's live log, line by line, each prefixed with
`<hubId>: ` (space-api.md S6). Hubs that join later are followed as they come; a bounded
queue applies back-pressure to the Hubs when the client reads slowly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from manager.hubs.errors import HubError
from manager.services.space_hubs import AnyHub

log = logging.getLogger("manager.services")

QUEUE_LINES = 256
RESCAN_S = 2.0
MAX_LINE = 1024 * 1024


async def merged_logs(hubs: Callable[[], Awaitable[list[AnyHub]]]) -> AsyncIterator[bytes]:
    """`hubs` lists the Space's connected Hubs (on every replica) each time it is called."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LINES)
    followed: dict[str, asyncio.Task[None]] = {}

    async def follow_new() -> None:
        for hub in await hubs():
            task = followed.get(hub.hub_id)
            if task is None or task.done():
                followed[hub.hub_id] = asyncio.ensure_future(_follow(hub, queue))

    try:
        await follow_new()
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), RESCAN_S)
            except TimeoutError:
                await follow_new()
                continue
            yield line
    finally:
        for task in followed.values():
            task.cancel()
        for task in followed.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _follow(hub: AnyHub, queue: asyncio.Queue[bytes]) -> None:
    prefix = hub.hub_id.encode() + b": "
    pending = b""
    try:
        async with hub.client.stream(b"GET", b"/api/v1/log", [(b"cpm", b"space-log")]) as response:
            if response.status != 200:
                return
            async for chunk in response.chunks():
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        await queue.put(prefix + line + b"\n")
                if len(pending) > MAX_LINE:
                    await queue.put(prefix + pending + b"\n")
                    pending = b""
    except HubError as exc:
        log.debug("hub %s: log stream ended: %r", hub.hub_id, exc)
