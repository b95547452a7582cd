"""The CONNECT carrier: takes a socket whose first request is `CONNECT`, asks an acceptor
whether to admit it, answers, and from then on feeds the socket through a TunnelSession.

manager/web/http_protocol.py gives uvicorn a protocol class that sniffs the first bytes of
each connection and hands CONNECTs to this module, so API, WebSocket and CONNECT tunnels
share one port (and TLS stays in uvicorn). The head is parsed with h11, never by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, cast

import h11

from manager.tunnel.session import TunnelSession

log = logging.getLogger("manager.tunnel")

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT_S = 10.0
EARLY_DATA_LIMIT = 1024 * 1024
CONNECT_START = b"CONNECT "


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """A tunnel's opening request, whichever carrier brought it."""

    target: str
    headers: dict[str, str]
    peer: str
    websocket: bool = False  # a WebSocket upgrade rather than CONNECT


@dataclass(slots=True)
class Admission:
    """The acceptor's answer: 200 with `run` (which lives as long as the tunnel), or a refusal."""

    status: int
    run: Callable[[TunnelSession], Awaitable[None]] | None = None
    name: str = "tunnel"
    abandon: Callable[[], None] | None = None  # called when `run` will not be (or is over)
    retry_after: int | None = None  # seconds, with a refusal a client may retry


class TunnelAcceptor(Protocol):
    async def admit(self, request: ConnectRequest) -> Admission: ...


class TunnelProtocol(asyncio.Protocol):
    """One tunnel socket from its CONNECT head to its close."""

    def __init__(self, acceptor: TunnelAcceptor, *, head_timeout: float = HEAD_TIMEOUT_S) -> None:
        self.acceptor = acceptor
        self.head_timeout = head_timeout
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._release: Callable[[], None] | None = None
        self.session: TunnelSession | None = None
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
        self._early = bytearray()
        self._admitting = False
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else str(peer or "?")
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.head_timeout, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.feed(data)
        elif self._admitting:
            self._early += data
            if len(self._early) > EARLY_DATA_LIMIT:
                self._refuse(400, "data before the tunnel was admitted")
        else:
            self._read_head(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost does the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._release is not None:
            self._release()  # the socket is gone, whatever the tunnel's task is still awaiting
        if self.session is not None:
            self.session.feed_eof("connection lost" if exc is None else f"connection lost: {exc}")
        elif self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session.pause_writing()

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.resume_writing()

    # Carrier

    def write(self, chunks: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(chunks)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # the head

    def _read_head(self, data: bytes) -> None:
        self._h11.receive_data(data)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            self._refuse(status if status in (400, 414, 431) else 400, f"bad CONNECT head: {exc}")
            return
        if event is h11.NEED_DATA:
            return
        if not isinstance(event, h11.Request) or event.method != b"CONNECT":
            self._refuse(400, "expected a CONNECT request")
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers
        }
        request = ConnectRequest(event.target.decode("latin-1"), headers, self.peer)
        self._admitting = True
        self._task = asyncio.get_running_loop().create_task(self._admit(request))

    async def _admit(self, request: ConnectRequest) -> None:
        try:
            admission = await self.acceptor.admit(request)
        except Exception as exc:
            log.error("tunnel from %s: admission failed: %r", self.peer, exc)
            self._refuse(503, "admission failed")
            return
        if self._closed:
            if admission.abandon is not None:
                admission.abandon()
            return
        if admission.status != 200 or admission.run is None:
            self._refuse(admission.status, None, admission.retry_after)
            return
        self._open(admission)

    def _open(self, admission: Admission) -> None:
        assert self.transport is not None
        if self._timer is not None:
            self._timer.cancel()
        # The Hub drops whatever shares a read with the 200 (spec §1.8): write it alone and
        # let `run` wait before the first frame.
        self.transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = TunnelSession(self, name=admission.name)
        self.session = session
        trailing, _closed = self._h11.trailing_data
        early = bytes(trailing) + bytes(self._early)
        self._early.clear()
        assert admission.run is not None
        self._task = asyncio.get_running_loop().create_task(self._run(admission.run, session))
        if admission.abandon is not None:
            # A task cancelled before its first step never runs `run` (nor its cleanup).
            abandon = admission.abandon
            self._release = abandon
            self._task.add_done_callback(lambda _task: abandon())
        if early:
            session.feed(early)

    async def _run(self, run: Callable[[TunnelSession], Awaitable[None]], s: TunnelSession) -> None:
        try:
            await run(s)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            log.error("%s: tunnel handler failed: %r", s.name, exc)
        finally:
            s.close("tunnel handler finished")

    def _refuse(self, status: int, why: str | None, retry_after: int | None = None) -> None:
        if why:
            log.warning("tunnel from %s refused (%d): %s", self.peer, status, why)
        if self.transport is None or self.transport.is_closing():
            return
        phrase = ""
        with contextlib.suppress(ValueError):
            phrase = HTTPStatus(status).phrase
        extra = "" if retry_after is None else f"Retry-After: {retry_after}\r\n"
        self.transport.write(f"HTTP/1.1 {status} {phrase}\r\n{extra}\r\n".encode())
        self.transport.close()

    def _head_timed_out(self) -> None:
        if self.session is None and not self._admitting:
            self._refuse(408, "no complete CONNECT head in time")
