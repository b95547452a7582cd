"""`/api/v1/space/S/api/v1/sth/H/api/v1/*` → the Hub's own `/api/v1/*`, through its tunnel.

Bodies stream both ways with back-pressure (the Hub client pulls the request body from the
client as the channel window allows; the response is pushed to the client as uvicorn
drains it), so nothing is held whole. The client leaving cancels the exchange, which ends
the channel; the Hub leaving mid-stream cuts the client's response off (the connection
drops without the final chunk), so the client can tell it from a complete one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import quote, unquote

from starlette.types import Message, Receive, Scope, Send

from manager import logs
from manager.common import org_id_of
from manager.db import audit, repo
from manager.hubs.announcements import Expected
from manager.hubs.client import Body
from manager.hubs.errors import HubError, HubUnavailable
from manager.hubs.peers import STALE_HEADER, STALE_ROUTE
from manager.hubs.registry import LiveHub
from manager.hubs.routing import RemoteHub
from manager.principal import Principal
from manager.services import placement
from manager.services.context import Services
from manager.services.errors import Invalid, NotFound, Unavailable
from manager.services.spaces import space_for
from manager.web.errors import error_response
from manager.web.proxy_headers import Headers, forwarded_headers, returned_headers

log = logging.getLogger("manager.proxy")

_PREFIX = re.compile(rb"^/api/v1/space/[^/]+/api/v1/sth/[^/]+/api/v1(/.*)?$")
_BAD_ESCAPES = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)
_START = re.compile(rb"^/api/v1/sequence/([^/?]+)/start(\?.*)?$")
_TOPIC_POST = re.compile(rb"^/api/v1/topic/([^/?]+)(\?.*)?$")
# How long the end of a topic POST waits for the Hub's announcement (announcements.py);
# it normally arrives within milliseconds.
ANNOUNCE_TIMEOUT_S = 2.0
# A proxied exchange still running after this long gets a task that listens for the client
# leaving (see _Exchange.run).
WATCH_AFTER_S = 0.05


def hub_target(scope: Scope) -> bytes:
    """The Hub-side request target, refusing paths that try to leave `/api/v1`."""
    raw = scope.get("raw_path") or scope["path"].encode()
    match = _PREFIX.match(raw)
    if match is None:
        raise NotFound("Not Found")
    rest = match.group(1) or b"/"
    if _BAD_ESCAPES.search(rest) or any(seg in (b"..", b".") for seg in rest.split(b"/")):
        raise Invalid("Path segments '..', '.' and encoded slashes are not allowed")
    if b"%2e" in rest.lower():
        raise Invalid("Encoded dots are not allowed in paths")
    target = b"/api/v1" + rest
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    return target


class HubProxy:
    """The ASGI endpoint for every method under a Hub's path."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        # Straight from the scope: a Starlette Request per proxied call cost ~1.5 % of the
        # manager's samples under wrk, for three lookups.
        svc: Services = scope["app"].state.services
        who: Principal = scope["state"]["principal"]
        space_id, hub_id = scope["path_params"]["space"], scope["path_params"]["hub"]
        target = hub_target(scope)
        live = svc.registry.get(space_id, hub_id)
        peer_epoch = scope["state"].get("peer_epoch")
        if peer_epoch is not None:
            # Forwarded by the replica that routed here (manager.web.peer): serve it only
            # while this very admission holds the Hub, and never forward it again.
            if live is None or live.epoch != peer_epoch or live.client.closed:
                await _stale_route(scope, receive, send, hub_id)
                return
        elif live is None or not who.may_use_space(space_id, org_id_of(space_id)):
            # A live Hub (here, or its route to another replica) proves its Space exists,
            # and a Space id names its org: the hot path needs no database round trip.
            found = None
            if who.may_use_space(space_id, org_id_of(space_id)):
                found = await svc.routes.find(space_id, hub_id)
            if found is None:
                found = await _not_here(svc, who, space_id, hub_id)
            if isinstance(found, RemoteHub):
                # Its holder runs the whole exchange (and records it); this replica relays.
                rid = scope["state"].get("request_id") or logs.new_request_id()
                moving = partial(svc.routes.moved, space_id, hub_id, found.epoch)
                await _Exchange(scope, receive, send, found, None, moving).run(
                    target, forwarded_headers(list(scope["headers"]), who.requestor, rid)
                )
                return
            live = found
        logs.hub_context.set((space_id, hub_id))
        target = await _stored_sequence_delivered(svc, live, scope, target)
        hold = _expect_announcement(live, scope, target)
        # A request forwarded here must not travel on (the forwarder follows a moved Hub).
        following: Moved | None = None
        if peer_epoch is None:
            following = partial(svc.routes.moved, space_id, hub_id, live.epoch)
        exchange = _Exchange(scope, receive, send, live, hold, following)
        rid = scope["state"].get("request_id") or logs.new_request_id()
        try:
            await exchange.run(
                target, forwarded_headers(list(scope["headers"]), who.requestor, rid)
            )
        finally:
            svc.metrics.proxy.observe(
                exchange.status, time.perf_counter() - started, exchange.sent, exchange.received
            )
            svc.audit.add(
                space_id=space_id,
                hub_id=hub_id,
                op_code=audit.PROXIED_OPERATION,
                op_state="END",
                object_id=target.split(b"?")[0].decode("latin-1")[:200],
                requestor_id=who.requestor,
                detail={"method": scope["method"], "status": exchange.status},
            )


async def _stored_sequence_delivered(
    svc: Services, live: LiveHub, scope: Scope, target: bytes
) -> bytes:
    """A start of a Sequence the Hub lacks but the Space's store has: hand the package over
    first and start the Hub's copy (placement.deliver says why)."""
    match = _START.match(target) if scope["method"] == "POST" else None
    if match is None:
        return target
    ref = unquote(match.group(1).decode("latin-1"))
    if placement.hub_has(live, ref):
        return target
    try:
        package = await svc.store_packages.package(live.space_id, ref)
    except NotFound:
        return target  # the Hub answers for itself
    seq_id = await placement.deliver(live, ref, package)
    return f"/api/v1/sequence/{quote(seq_id, safe='')}/start".encode() + (match.group(2) or b"")


def _expect_announcement(live: LiveHub, scope: Scope, target: bytes) -> Expected | None:
    """For a client's topic POST to an STH: listen for the Hub's announcement of it."""
    if scope["method"] != "POST" or not live.announces_topic_posts:
        return None
    match = _TOPIC_POST.match(target)
    if match is None or any(name.lower() == b"cpm" for name, _ in scope["headers"]):
        return None
    return live.topic_announcements.expect(unquote(match.group(1).decode("latin-1")))


async def _not_here(
    svc: Services, who: Principal, space_id: str, hub_id: str
) -> LiveHub | RemoteHub:
    """The Hub when no live route names it: the caller's Space checked in SQL (403/404 in
    words), then the Hub, briefly waited for if the manager itself just moved it."""
    async with svc.sessions() as s:
        space = await space_for(s, who, space_id)
        known = await repo.get_hub(s, space.id, hub_id)
    if known is None:
        raise NotFound(f"Hub {hub_id} not found")
    found = await svc.routes.find(space.id, hub_id) or await svc.routes.returning(
        space.id, hub_id, known
    )
    if found is None:
        raise Unavailable(f"Hub {hub_id} is not connected")
    return found


async def _stale_route(scope: Scope, receive: Receive, send: Send, hub_id: str) -> None:
    refusal = error_response(
        STALE_ROUTE,
        f"Hub {hub_id} is not held here at that epoch",
        {STALE_HEADER.decode(): "1"},
    )
    await refusal(scope, receive, send)


Moved = Callable[[], Awaitable[LiveHub | RemoteHub | None]]


class _ClientGone(Exception):
    pass


class _Exchange:
    """One proxied request: the client's body to the Hub, the Hub's answer to the client,
    and the client leaving at any point ending the channel."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        live: LiveHub | RemoteHub,
        hold_end: Expected | None,
        moved: Moved | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.live = live
        self.hold_end = hold_end  # see _expect_announcement
        self.moved = moved  # where the Hub went, if it turns out to be leaving this one
        self.body_done = asyncio.Event()
        self.started = False
        self.status = 0
        self.task: asyncio.Task[Any] | None = None
        self.watcher: asyncio.Future[None] | None = None
        self.client_left = False
        self.finished = False
        self.sent = 0  # body bytes to the Hub
        self.received = 0  # and from it

    def framing(self) -> tuple[Headers, bool]:
        """The body's framing headers for the Hub, and whether there is a body."""
        length = chunked = None
        for name, value in self.scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if self.hold_end is not None:
            # Chunked, so the end (the last chunk) can be held back while the data flows.
            return [(b"transfer-encoding", b"chunked")], True
        if length is not None:
            return [(b"content-length", length)], length.strip() != b"0"
        if chunked:
            return [(b"transfer-encoding", b"chunked")], True
        return [], False

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                self.sent += len(chunk)
                yield chunk
            if not message.get("more_body", False):
                break
        if self.hold_end is not None and not await self.hold_end.wait(ANNOUNCE_TIMEOUT_S):
            log.info("hub %s: topic %s not announced in time", self.live.hub_id, self.hold_end.name)
        self.body_done.set()

    async def watch_client(self) -> None:
        """After the request body, the only thing left to hear is the client leaving; then
        the exchange (running in the request's own task) is cancelled."""
        await self.body_done.wait()
        while True:
            message: Message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if self.task is not None and not self.finished:
            self.client_left = True
            self.task.cancel()  # leaving the Hub stream resets the channel

    def start_watching(self) -> None:
        self.watcher = asyncio.ensure_future(self.watch_client())

    async def run(self, target: bytes, headers: Headers) -> None:
        """Forward in this task. Most answers take a few milliseconds, and a task to watch
        for the client leaving cost more than the rest of such a request; so the watcher
        starts only once the exchange has taken WATCH_AFTER_S (a stream, a slow Hub)."""
        framing, has_body = self.framing()
        if not has_body:
            self.body_done.set()
        self.task = asyncio.current_task()
        timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self.start_watching)
        try:
            await self.forward(target, headers + framing, self.body() if has_body else None)
        except asyncio.CancelledError:
            if not self.client_left:
                raise
            assert self.task is not None
            self.task.uncancel()  # ours, not the server's: the request just ends
        finally:
            self.finished = True
            timer.cancel()
            if self.watcher is not None:
                self.watcher.cancel()
            if self.hold_end is not None:
                self.hold_end.cancel()

    async def forward(self, target: bytes, headers: Headers, body: Body) -> None:
        method = self.scope["method"].encode()
        try:
            async with self.live.client.stream(method, target, headers, body) as response:
                await self.send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": returned_headers(response.headers),
                    }
                )
                self.started = True
                self.status = response.status
                async for chunk in response.chunks():
                    self.received += len(chunk)
                    await self.send(
                        {"type": "http.response.body", "body": chunk, "more_body": True}
                    )
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        except _ClientGone:
            return
        except HubUnavailable as exc:
            # Nothing reached the Hub (its client was closed, or no holder took the request):
            # if it is moving to another replica (a drain), follow it there once.
            other = None
            if not self.started and self.sent == 0 and self.moved is not None:
                other, self.moved = await self.moved(), None
            if other is None:
                await self._fail(exc.status, exc.message)
                return
            self.live, self.hold_end = other, None
            await self.forward(target, headers, self.body() if body is not None else None)
        except HubError as exc:
            await self._fail(exc.status, exc.message)

    async def _fail(self, status: int, message: str) -> None:
        hub_id = self.live.hub_id
        if self.started:
            # Headers are out: leave the response unfinished, so the server drops the
            # connection without the final chunk (or short of the Content-Length) and the
            # client sees a cut-off body, never one that looks complete.
            log.info("hub %s: stream ended early: %s", hub_id, message)
            return
        log.info("hub %s: %d %s", hub_id, status, message)
        self.status = status
        await error_response(status, message)(self.scope, self.receive, self.send)
