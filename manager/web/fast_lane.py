"""The fast lane: a proxied Hub GET served past uvicorn's h11, Starlette's routing and the
middleware stack, straight into the proxy.

Why: under `wrk` (c=16, real STH 1.0.1) a proxied GET cost the manager ~420 µs of CPU, ten
times a bare Starlette endpoint; py-spy put most of the difference in the layers around the
proxy rather than in it: h11 parsing and serializing on the client side, the ASGI cycle,
seven middleware and routing layers, each wrapping `send`.

It takes a request only when every decision is already made in memory: a plain HTTP/1.1
GET with no body (manager.web.lane_head), a bearer token `authenticate` accepted within its
cache time, the plan snapshot loaded; or the same GET forwarded by another replica with the
peer secret (a holder's share of every forwarded call, streams included). Then it does what
the middleware would (request id, rate limit; for a forward, manager.web.peer's checks) and
calls the same `HubProxy` endpoint. Everything else (a token seen for the
first time or refused, other methods, odd HTTP, a path it cannot split plainly) goes the
whole way through uvicorn and Starlette, which remain the reference for every answer; a
connection can alternate between the two from one request to the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Scope
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string
from uvicorn.server import ServerState

from manager import logs
from manager.hubs.http1 import LAST_CHUNK, frame_chunk
from manager.hubs.peers import FORWARDED_PREFIX, PEER_PREFIX, SECRET_HEADER, secret_matches
from manager.services.metrics import ProxyMetrics
from manager.services.quotas import Quotas
from manager.services.tokens import TokenService
from manager.web import lane_head
from manager.web.auth import bearer_token
from manager.web.errors import HANDLERS, error_response
from manager.web.peer import forwarded_call, without_peer_headers
from manager.web.rate_limit import RateLimiter
from manager.web.request_id import HEADER as REQUEST_ID

log = logging.getLogger("manager.web")

_SPACE = b"/api/v1/space/"
_PEER = PEER_PREFIX.encode()
_FORWARDED = FORWARDED_PREFIX.encode()
_API = b"/api/v1"
PENDING_LIMIT = 64 * 1024  # bytes a client may send ahead while its request is served


@dataclass(frozen=True, slots=True)
class LaneRoutes:
    """What every lane shares: the app (its state and exception handlers), the proxy
    endpoint, and the caches the decisions come from."""

    app: Starlette
    proxy: ASGIApp
    tokens: TokenService
    quotas: Quotas
    limiter: RateLimiter
    metrics: ProxyMetrics
    peer_secret: str  # what another replica's forwards carry (manager.web.peer)


def split_target(target: bytes) -> tuple[str, str] | None:
    """The Space and Hub of `/api/v1/space/<S>/api/v1/sth/<H>/api/v1[/...]`, for a path
    with no escapes and no empty segments (what Starlette and the auth middleware would
    decode or rewrite, the lane leaves to them)."""
    path = target.split(b"?", 1)[0]
    if not path.startswith(_SPACE) or b"//" in path or b"%" in path:
        return None
    parts = path.split(b"/", 8)  # '', api, v1, space, S, api, v1, sth, H/...
    if len(parts) < 9 or parts[5:8] != [b"api", b"v1", b"sth"]:
        return None
    hub, _, rest = parts[8].partition(b"/")
    if not parts[4] or not hub or not (b"/" + rest + b"/").startswith(_API + b"/"):
        return None
    return parts[4].decode("ascii"), hub.decode("ascii")


class ProxyLane:
    """One connection's lane: at most one request at a time; what the client sends while
    one is served waits, and is offered again (to the lane or to uvicorn) afterwards."""

    def __init__(
        self,
        routes: LaneRoutes,
        transport: Any,
        flow: FlowControl,
        server_state: ServerState,
        scope_base: dict[str, Any],
        finished: Callable[[bool, bytes], None],
        access_logger: logging.Logger | None = None,
    ) -> None:
        self.routes = routes
        self.access_logger = access_logger  # uvicorn's, when it has handlers (as uvicorn asks)
        self.transport = transport
        self.flow = flow
        self.server_state = server_state
        self.scope_base = scope_base  # server, client, scheme: fixed per connection
        self.finished = finished  # (keep the connection, bytes received meanwhile)
        self.busy = False
        self.served = 0
        self._pending = b""
        self._disconnected = asyncio.Event()
        self._close_after = False

    # called by the protocol

    def offer(self, data: bytes) -> bytes | None:
        """None if the lane took `data`; otherwise every byte it held back with `data`, for
        uvicorn to parse from the start."""
        if self.busy:
            self._pending += data
            if len(self._pending) > PENDING_LIMIT:
                self.flow.pause_reading()
            return None
        buffer = self._pending + data if self._pending else data
        self._pending = b""
        end = lane_head.head_end(buffer)
        if end < 0:
            if len(buffer) < lane_head.MAX_HEAD and lane_head.may_be_lane_request(buffer):
                self._pending = buffer
                return None
            return buffer
        if end != len(buffer):
            return buffer  # pipelined requests (or a body): uvicorn's
        started = self._start(buffer)
        return None if started else buffer

    def connection_lost(self) -> None:
        self._disconnected.set()

    def shutdown(self) -> None:
        """The server is stopping (or draining): close once the current answer is out."""
        self._close_after = True

    # internals

    def _start(self, head_bytes: bytes) -> bool:
        if not lane_head.may_be_lane_request(head_bytes):
            return False
        head = lane_head.parse_request_head(head_bytes)
        if head is None:
            return False
        forwarded = head.target.startswith(_FORWARDED)
        target = head.target[len(_PEER) :] if forwarded else head.target
        names = split_target(target)
        if names is None:
            return False
        headers = head.headers
        rid = logs.accept_request_id(next((v for n, v in headers if n == REQUEST_ID), None))
        state: dict[str, Any]
        if forwarded:
            # Another replica's forward of a call it has authenticated and counted: what
            # manager.web.peer does for the full stack (which answers any refusal).
            offered = next((v for n, v in headers if n == SECRET_HEADER), None)
            if not secret_matches(offered, self.routes.peer_secret):
                return False
            found = forwarded_call(headers, names[0])
            if found is None:
                return False
            who, epoch = found
            headers = without_peer_headers(headers)
            state = {"principal": who, "request_id": rid, "peer_epoch": epoch}
            refusal = None
        else:
            bearer = bearer_token(headers)
            cached = self.routes.tokens.cached(bearer) if bearer else None
            snapshot = self.routes.quotas.snapshot_now()
            if cached is None or snapshot is None:
                return False
            who = cached
            state = {"principal": who, "request_id": rid}
            refusal = self.routes.limiter.refusal(who, snapshot)
        path, _, query = target.partition(b"?")
        scope: dict[str, Any] = {
            **self.scope_base,
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "root_path": "",
            "path": path.decode("ascii"),
            "raw_path": path,
            "query_string": query,
            "headers": headers,
            "app": self.routes.app,
            "state": state,
            "path_params": {"space": names[0], "hub": names[1]},
        }
        endpoint = refusal if refusal is not None else self.routes.proxy
        self.busy = True
        self.routes.metrics.fast_lane.inc()
        self._close_after = not head.keep_alive
        # The access log names the path as the client sent it (uvicorn's scope keeps it).
        logged = {**scope, "path": PEER_PREFIX + scope["path"]} if forwarded else scope
        exchange = _Answer(self, rid, logged)
        task = asyncio.get_running_loop().create_task(exchange.run(endpoint, scope))
        self.server_state.tasks.add(task)
        task.add_done_callback(self.server_state.tasks.discard)
        return True

    def _done(self, complete: bool) -> None:
        self.busy = False
        self.served += 1
        self.server_state.total_requests += 1
        keep = complete and not self._close_after and not self._disconnected.is_set()
        pending, self._pending = self._pending, b""
        self.flow.resume_reading()
        self.finished(keep, pending)


class _Answer:
    """One request's ASGI `receive` and `send`, written straight to the socket."""

    def __init__(self, lane: ProxyLane, request_id: str, scope: Scope) -> None:
        self.lane = lane
        self.scope = scope
        self.request_id = request_id.encode()
        self.started = False
        self.complete = False
        self.chunked = False
        self.body_allowed = True
        self._asked = False

    async def run(self, endpoint: ASGIApp, scope: Scope) -> None:
        token = logs.request_id.set(self.request_id.decode())
        try:
            await endpoint(scope, self.receive, self.send)
        except Exception as exc:
            if self.started:
                log.warning("fast lane: answer cut short by %r", exc)
            else:
                await self._error(scope, exc)
        finally:
            logs.request_id.reset(token)
            if not self.started and not self.lane._disconnected.is_set():
                await error_response(500)(scope, self.receive, self.send)  # as uvicorn would
            if not self.complete:
                self.lane.transport.close()  # a cut answer must not look complete
            self.lane._done(self.complete)

    async def _error(self, scope: Scope, exc: Exception) -> None:
        """What Starlette's exception handlers would answer for `exc`."""
        for kind in type(exc).__mro__:
            handler = HANDLERS.get(kind)
            if handler is not None:
                response = await handler(Request(scope, self.receive), exc)
                await response(scope, self.receive, self.send)
                return
        await error_response(500)(scope, self.receive, self.send)

    async def receive(self) -> Message:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.lane._disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        lane = self.lane
        if lane._disconnected.is_set():
            return
        kind = message["type"]
        if kind == "http.response.start" and not self.started:
            self.started = True
            status = message["status"]
            if lane.access_logger is not None:  # the line uvicorn writes for each answer
                lane.access_logger.info(
                    '%s - "%s %s HTTP/%s" %d',
                    get_client_addr(cast(Any, self.scope)),
                    "GET",
                    get_path_with_query_string(cast(Any, self.scope)),
                    "1.1",
                    status,
                )
            headers = [*lane.server_state.default_headers, *message.get("headers", ())]
            headers.append((REQUEST_ID, self.request_id))
            self.body_allowed = lane_head.has_body(status)
            if self.body_allowed and not any(n == b"content-length" for n, _ in headers):
                self.chunked = True
                headers.append((b"transfer-encoding", b"chunked"))
            if lane._close_after:
                headers.append((b"connection", b"close"))
            lane.transport.write(lane_head.response_head(status, headers))
        elif kind == "http.response.body" and self.started and not self.complete:
            body = message.get("body", b"")
            if body and self.body_allowed:
                lane.transport.write(frame_chunk(body) if self.chunked else body)
            if not message.get("more_body", False):
                if self.chunked:
                    lane.transport.write(LAST_CHUNK)
                self.complete = True
        if lane.flow.write_paused:
            await lane.flow.drain()
