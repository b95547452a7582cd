"""Two TunnelSessions joined back to back, with no socket between them.

The model is h11's ConnectionPair: what one side writes, the other is fed, one loop turn
later (as a socket would deliver it), so the tunnel and everything over it (the Hub
client) is tested on real frames without the network. `FakeCarrier` can also swallow
writes (a black hole) or drop the link.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from manager.tunnel.session import ChannelHandler, TunnelSession


class FakeCarrier:
    """The byte pipe under one session: delivers its writes to `peer`'s session."""

    def __init__(self) -> None:
        self.peer: TunnelSession | None = None
        self.black_hole = False
        self.closed = False
        self.written = 0

    def write(self, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        self.written += len(data)
        if self.closed or self.black_hole or self.peer is None:
            return
        peer = self.peer
        asyncio.get_running_loop().call_soon(peer.feed, data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.peer is not None:
            asyncio.get_running_loop().call_soon(self.peer.feed_eof, "peer closed the carrier")


@contextlib.asynccontextmanager
async def session_pair(
    on_hub_channel: ChannelHandler | None = None,
    *,
    window: int = 256 * 1024,
    explicit_consume: bool = False,
) -> AsyncIterator[tuple[TunnelSession, TunnelSession]]:
    """(manager side, Hub side): the manager opens high channels, the Hub serves them (and
    opens low ones); `explicit_consume` is the Hub side's (as `space-manager connect` runs it)."""
    to_hub, to_manager = FakeCarrier(), FakeCarrier()
    manager = TunnelSession(to_hub, name="manager", window=window)
    hub = TunnelSession(
        to_manager,
        name="hub",
        window=window,
        on_channel=on_hub_channel,
        high_channels=False,
        explicit_consume=explicit_consume,
    )
    to_hub.peer, to_manager.peer = hub, manager
    try:
        yield manager, hub
    finally:
        manager.close("test over")
        hub.close("test over")
        await asyncio.sleep(0)
