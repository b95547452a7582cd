"""The HTTP protocol uvicorn runs on every connection of the API port.

uvicorn's h11 protocol, with two things in front of it: a connection opening with CONNECT is
a Hub's tunnel and is handed to manager.tunnel.connect (so API, WebSocket and CONNECT
tunnels share one port, and TLS stays in uvicorn); and between requests, a plain proxied
GET may be taken by the fast lane (manager.web.fast_lane), which answers it without h11,
the ASGI cycle and the middleware stack. Whatever the lane declines reaches uvicorn's h11
byte for byte, as if the lane were not there.
"""

from __future__ import annotations

import asyncio
from typing import cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from manager.tunnel.batched_writes import BatchedWrites
from manager.tunnel.connect import CONNECT_START, HEAD_TIMEOUT_S, TunnelAcceptor, TunnelProtocol
from manager.web.fast_lane import LaneRoutes, ProxyLane


class ApiProtocol(H11Protocol):
    """See the module docstring; `acceptor` and `lane_routes` are set by `make_http_protocol`."""

    acceptor: TunnelAcceptor
    lane_routes: LaneRoutes | None = None

    _decided = False
    _sniffed = b""
    _head_timer: asyncio.TimerHandle | None = None
    _lane_done_at = float("-inf")
    lane: ProxyLane | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, BatchedWrites(transport, self.loop)))
        # uvicorn waits forever for a first request head; a slow or silent client (or a
        # WebSocket that never finishes its upgrade request) must not hold a socket.
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _open_lane(self) -> None:
        """The lane, made once the connection turns out not to be a tunnel (a Hub's CONNECT
        never needs one: 10,000 Hubs, 10,000 lanes fewer)."""
        if self.lane_routes is not None:
            self.lane = ProxyLane(
                self.lane_routes,
                self.transport,
                self.flow,
                self.server_state,
                {"server": self.server, "client": self.client, "scheme": self.scheme},
                self._lane_finished,
                self.access_logger if self.access_log else None,
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        lane, self.lane = self.lane, None
        if lane is not None:
            # The lane calls back into this protocol: unlinked, the pair is freed by
            # reference counting instead of waiting for (and feeding) a cyclic collection.
            lane.connection_lost()
        super().connection_lost(exc)

    @property
    def served(self) -> bool:
        """Whether any request was answered here (a drain closes such idle connections)."""
        return self.cycle is not None or (self.lane is not None and self.lane.served > 0)

    def shutdown(self) -> None:
        if self.lane is not None and self.lane.busy:
            self.lane.shutdown()
        else:
            super().shutdown()

    def data_received(self, data: bytes) -> None:
        if not self._decided:
            self._sniffed += data
            head = self._sniffed[: len(CONNECT_START)]
            if len(head) < len(CONNECT_START) and CONNECT_START.startswith(head):
                return  # not enough bytes to tell yet
            self._decided = True
            data, self._sniffed = self._sniffed, b""
            if head == CONNECT_START:
                self._first_head_seen(force=True)
                self._hand_over(data)
                return
            self._open_lane()
        lane = self.lane
        if lane is not None and (lane.busy or self._between_requests()):
            rest = lane.offer(data)
            if rest is None:
                if lane.busy:
                    # A request is in hand: the keep-alive timer stays armed and, when it
                    # fires, looks at when the lane was last done (timeout_keep_alive_handler).
                    # Part of a head changes nothing: a client that never finishes one is
                    # dropped as before.
                    self._first_head_seen(force=True)
                return
            data = rest
        super().data_received(data)
        self._first_head_seen()

    def _between_requests(self) -> bool:
        """uvicorn has no request in hand, nor part of one buffered in h11."""
        cycle = self.cycle
        if cycle is None:
            return not self.conn.trailing_data[0]
        return (
            cycle.response_complete
            and self.conn.our_state is h11.IDLE
            and self.conn.their_state is h11.IDLE
            and not self.conn.trailing_data[0]
        )

    def _lane_finished(self, keep: bool, pending: bytes) -> None:
        if not keep:
            self.transport.close()
            return
        if self.transport.is_closing():
            return
        # One keep-alive timer per connection, not one armed and cancelled per request
        # (uvicorn's way): a cancelled timer stays in the loop's heap until its time.
        self._lane_done_at = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
        if pending:
            self.data_received(pending)

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's keep-alive timeout, counted from the later of its last answer (when it
        armed this) and the lane's; never while the lane is answering."""
        self.timeout_keep_alive_task = None
        lane = self.lane
        if lane is not None:
            idle = self.loop.time() - self._lane_done_at
            if lane.busy or idle < self.timeout_keep_alive:
                wait = self.timeout_keep_alive - (0.0 if lane.busy else idle)
                self.timeout_keep_alive_task = self.loop.call_later(
                    wait, self.timeout_keep_alive_handler
                )
                return
        super().timeout_keep_alive_handler()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.get_protocol() is self and not self.served and not self._busy():
            self.transport.close()

    def _busy(self) -> bool:
        return self.lane is not None and self.lane.busy

    def _first_head_seen(self, force: bool = False) -> None:
        if self._head_timer is not None and (force or self.cycle is not None):
            self._head_timer.cancel()
            self._head_timer = None

    def _hand_over(self, buffered: bytes) -> None:
        self.connections.discard(self)
        self._unset_keepalive_if_required()
        tunnel = TunnelProtocol(self.acceptor)
        # The tunnel batches its own frames: give it the socket's transport itself.
        raw = cast(BatchedWrites, self.transport).transport
        raw.set_protocol(tunnel)
        tunnel.connection_made(raw)
        tunnel.data_received(buffered)


def make_http_protocol(
    acceptor: TunnelAcceptor, lane_routes: LaneRoutes | None = None
) -> type[ApiProtocol]:
    """The protocol class for uvicorn's `http` setting (it instantiates it per connection)."""
    return type("ApiProtocol", (ApiProtocol,), {"acceptor": acceptor, "lane_routes": lane_routes})
