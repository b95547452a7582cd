"""Moves topic data between Hubs (spec §6): from each Hub that provides a topic someone else
needs, `GET /api/v1/topic/<t>`; into each Hub that requires it (and does not provide it
itself), a never-ending `POST /api/v1/topic/<t>`. Both carry `cpm` so the Hubs do not
announce this traffic back. Routes follow the Hubs' TOPIC announcements: a Hub leaving
stops its routes, a Hub coming back gets them again.

With several replicas each router still pulls only from the providers it holds and pushes
only into the consumers it holds, so a Hub topic has one reader and one writer as before.
The boards are joined instead: where a Hub held here requires a topic that Hubs on another
replica provide, a relay route reads that replica's board (its own producers' chunks only,
`/_peer/v1/spaces/<S>/topics/<t>`) into this one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from manager.hubs.errors import HubError
from manager.hubs.registry import HubRegistry, LiveHub
from manager.hubs.routing import HubRoutes, RemoteView
from manager.services.topics import (
    RELAYED,
    Consumer,
    SpaceTopic,
    TopicBoard,
    WrongContentType,
    drain,
)

log = logging.getLogger("manager.topics")

RETRY_S = 1.0
# space, topic, hub id (a replica's, for "relay"), its epoch, "pull" | "push" | "relay"
RouteKey = tuple[str, str, str, int, str]


class TopicRouter:
    def __init__(
        self,
        registry: HubRegistry,
        board: TopicBoard,
        interval: float = 1.0,
        routes: HubRoutes | None = None,
    ) -> None:
        self.registry = registry
        self.hub_routes = routes
        self.board = board
        self.interval = interval
        self.routes: dict[RouteKey, asyncio.Task[None]] = {}
        self._failed: dict[RouteKey, float] = {}
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def kick(self) -> None:
        """Something changed (a reader or producer came): reconcile now."""
        self._kick.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in self.routes.values():
            task.cancel()
        self.routes.clear()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
            self._kick.clear()
            try:
                await self.reconcile()
            except Exception as exc:
                log.warning("topic routing failed: %r", exc)

    async def desired(self) -> dict[RouteKey, tuple[SpaceTopic, LiveHub | str]]:
        want: dict[RouteKey, tuple[SpaceTopic, LiveHub | str]] = {}
        spaces = {h.space_id for h in self.registry}
        for space_id in spaces:
            local = self.registry.in_space(space_id)
            names = {name for h in local for name in h.state.topics}
            remote: list[RemoteView] = []
            if self.hub_routes is not None and any(
                t.requires and not t.provides for h in local for t in h.state.topics.values()
            ):
                remote = await self.hub_routes.remote_views(space_id)
            for name in names:
                infos = [(h, h.state.topics[name]) for h in local if name in h.state.topics]
                try:
                    topic = self.board.open(space_id, name, infos[0][1].content_type, None)
                except WrongContentType as exc:
                    log.warning("space %s: %s", space_id, exc.message)
                    continue
                providers = [h for h, t in infos if t.provides]
                consumers = [h for h, t in infos if t.requires and not t.provides]
                if consumers:
                    # Providers elsewhere: relay their replica's board into this one.
                    for replica in sorted(
                        {
                            v.replica
                            for v in remote
                            if (t := v.state.topics.get(name)) is not None and t.provides
                        }
                    ):
                        want[(space_id, name, replica, 0, "relay")] = (topic, replica)
                api_readers = any(c.skip is None for c in topic.consumers)
                for hub in consumers:
                    want[(space_id, name, hub.hub_id, hub.epoch, "push")] = (topic, hub)
                for hub in providers:
                    if api_readers or any(c is not hub for c in consumers):
                        want[(space_id, name, hub.hub_id, hub.epoch, "pull")] = (topic, hub)
        if self.hub_routes is not None:
            # A Space API client reading a topic here: what the Space's Hubs on the other
            # replicas provide reaches it through their boards (each pulls its providers
            # while our relay reads), also when no Hub of the Space is connected here.
            holders: dict[str, list[str]] = {}
            for space_id, topic in self.board.read_by_api():
                if space_id not in holders:
                    holders[space_id] = await self.hub_routes.holders_elsewhere(space_id)
                for replica in holders[space_id]:
                    want[(space_id, topic.name, replica, 0, "relay")] = (topic, replica)
        return want

    async def reconcile(self) -> None:
        want = await self.desired()
        for key in [k for k in self.routes if k not in want or self.routes[k].done()]:
            task = self.routes.pop(key)
            task.cancel()
        now = time.monotonic()
        for key, (topic, hub) in want.items():
            if key in self.routes or now - self._failed.get(key, 0) < RETRY_S:
                continue
            if isinstance(hub, str):
                runner = self._relay(hub, topic, key[0])
            elif key[4] == "pull":
                runner = self._pull(hub, topic)
            else:
                runner = self._push(hub, topic)
            self.routes[key] = asyncio.get_running_loop().create_task(self._run(key, runner))

    async def _run(self, key: RouteKey, runner: Coroutine[Any, Any, None]) -> None:
        try:
            await runner
        finally:
            self._failed[key] = time.monotonic()  # a route that ended waits before it restarts

    async def _pull(self, hub: LiveHub, topic: SpaceTopic) -> None:
        headers = [*_headers(topic), (b"accept", b"*/*")]
        try:
            async with hub.client.stream(b"GET", _target(topic.name), headers) as resp:
                if resp.status != 200:
                    log.warning(
                        "hub %s: topic %s pull answered %d", hub.hub_id, topic.name, resp.status
                    )
                    return
                await topic.feed(resp.chunks(), hub.hub_id)
        except HubError as exc:
            log.info("hub %s: topic %s pull ended: %s", hub.hub_id, topic.name, exc)

    async def _push(self, hub: LiveHub, topic: SpaceTopic) -> None:
        consumer: Consumer = topic.subscribe(skip=hub.hub_id)
        headers = [*_headers(topic), (b"transfer-encoding", b"chunked")]
        try:
            async with hub.client.stream(
                b"POST", _target(topic.name), headers, drain(consumer)
            ) as resp:
                if resp.status >= 300:
                    log.warning(
                        "hub %s: topic %s push answered %d", hub.hub_id, topic.name, resp.status
                    )
        except HubError as exc:
            log.info("hub %s: topic %s push ended: %s", hub.hub_id, topic.name, exc)
        finally:
            topic.unsubscribe(consumer)

    async def _relay(self, replica: str, topic: SpaceTopic, space_id: str) -> None:
        """Another replica's board (what its own producers write) into this one's."""
        assert self.hub_routes is not None
        try:
            async with self.hub_routes.peer_topic(
                replica, space_id, topic.name, topic.content_type
            ) as resp:
                if resp.status != 200:
                    log.warning(
                        "replica %s: topic %s relay answered %d", replica, topic.name, resp.status
                    )
                    return
                await topic.feed(resp.chunks(), RELAYED + replica)
        except HubError as exc:
            log.info("replica %s: topic %s relay ended: %s", replica, topic.name, exc)


def _target(name: str) -> bytes:
    return f"/api/v1/topic/{name}".encode()


def _headers(topic: SpaceTopic) -> list[tuple[bytes, bytes]]:
    return [(b"cpm", b"space-manager"), (b"content-type", topic.content_type.encode())]
