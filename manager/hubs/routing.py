"""Which replica holds a Hub, and the client that reaches it from here.

A Hub in this replica's registry is reached through its tunnel. Any other connected Hub has
a routing row in SQL (replica, epoch) written at admission; requests for it go to that
replica's peer route (`manager.hubs.peers`). Routes are cached briefly: a cached route that
went stale costs one 409 and one fresh read, never a wrong answer, because the holder
checks the epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager.common import now_ms
from manager.db import routing
from manager.db.models import Hub
from manager.hubs.client import HubClient, HubResponse, WholeAnswers
from manager.hubs.endings import MOVING
from manager.hubs.errors import HubError, HubUnavailable
from manager.hubs.peers import (
    PEER_PREFIX,
    SECRET_HEADER,
    PeerSource,
    RemoteHubClient,
)
from manager.hubs.registry import HubRegistry, LiveHub
from manager.hubs.state import HubState

ROUTE_TTL_S = 2.0
RETURN_WAIT_S = 8.0  # an STH reconnects within ~1-3 s of losing its tunnel
RETURN_WINDOW_S = 20.0
RETURN_POLL_S = 0.1
PEER_ASK_TIMEOUT_S = 3.0
log = logging.getLogger("manager.replicas")


@dataclass(eq=False)
class RemoteView:
    """A Hub another replica holds, as the Space's lists show it."""

    space_id: str
    hub_id: str
    state: HubState
    healthy: bool
    client: RemoteHubClient
    epoch: int = 0
    replica: str = ""


@dataclass(eq=False)
class RemoteHub:
    """A connected Hub whose tunnel is on another replica."""

    space_id: str
    hub_id: str
    replica: str
    epoch: int
    client: RemoteHubClient


class HubRoutes:
    def __init__(
        self,
        registry: HubRegistry,
        sessions: async_sessionmaker[AsyncSession],
        replica: str,
        secret: str,
    ) -> None:
        self.registry = registry
        self.sessions = sessions
        self.replica = replica
        self.secret = secret
        self._cache: dict[tuple[str, str], tuple[float, routing.HubRoute]] = {}
        self._peers: dict[tuple[str, str], tuple[HubClient, str]] = {}
        self._urls: dict[str, str] = {}  # replica -> peer URL, as last seen
        # (replica, peer URL, Space) -> the ETag of its last Hubs answer and its views
        self._seen: dict[tuple[str, str, str], tuple[bytes, dict[str, RemoteView]]] = {}
        # Set by the lease (manager.replicas.lease) each beat: False when this replica is
        # alone, so nothing here asks SQL or peers about other replicas.
        self.others_alive: Callable[[], bool] = lambda: True

    async def find(
        self, space_id: str, hub_id: str, *, reroute: bool = True
    ) -> LiveHub | RemoteHub | None:
        """The Hub here, the replica holding it, or None when it is not connected. A remote
        Hub's client looks its route up again once if it turns out stale (`reroute`)."""
        live = self.registry.get(space_id, hub_id)
        if live is not None or not self.others_alive():
            return live
        key = (space_id, hub_id)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now < hit[0]:
            route = hit[1]
        else:
            async with self.sessions() as s:
                found = await routing.hub_route(s, space_id, hub_id, now_ms())
            if found is None or found.replica == self.replica:
                # Ours in SQL but not in the registry: it is just connecting or leaving.
                self._cache.pop(key, None)
                return None
            route = found
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = (now + ROUTE_TTL_S, route)
        return self._remote(space_id, hub_id, route, reroute=reroute)

    async def connected_count(self, space_id: str) -> int:
        """The Space's connected Hubs on every live replica."""
        return self.registry.count(space_id) + await self.connected_elsewhere(space_id)

    async def connected_elsewhere(self, space_id: str) -> int:
        """The Space's Hubs that other live replicas hold (for its Hub limit)."""
        if not self.others_alive():
            return 0
        async with self.sessions() as s:
            return await routing.connected_elsewhere(s, space_id, self.replica, now_ms())

    async def held_elsewhere(self, space_id: str, hub_id: str) -> bool:
        """Whether another live replica holds the Hub over a tunnel that is not silent (a
        newcomer with the same id then gets ID_DROP); an unreachable holder holds nothing."""
        if not self.others_alive():
            return False
        async with self.sessions() as s:
            route = await routing.hub_route(s, space_id, hub_id, now_ms())
        if route is None or route.replica == self.replica:
            return False
        answer = await self._ask(
            route.replica,
            route.peer_url,
            f"/v1/spaces/{quote(space_id, safe='')}/hubs/{quote(hub_id, safe='')}",
        )
        return bool(answer and answer.get("held") and answer.get("alive"))

    async def _holders_elsewhere(self, space_id: str) -> list[tuple[str, str]]:
        """(replica, peer URL) of the other live replicas holding a Hub of the Space (one
        SQL read; none when alone)."""
        if not self.others_alive():
            return []
        async with self.sessions() as s:
            holders = await routing.replicas_holding(s, space_id, now_ms())
        for replica, url in holders:
            self._urls[replica] = url
        return sorted((r, url) for r, url in holders if r != self.replica)

    async def holders_elsewhere(self, space_id: str) -> list[str]:
        """The other live replicas holding a Hub of the Space."""
        return [r for r, _ in await self._holders_elsewhere(space_id)]

    async def remote_views(self, space_id: str, *, load: bool = False) -> list[RemoteView]:
        """The Space's Hubs the other live replicas hold, as they see them now (asked in
        parallel; a replica that does not answer in time is left out, and logged). Without
        `load` each holder answers 304 while what the lists show is unchanged, and the views
        of its last answer are reused (manager.services.held_hubs says why); with it, the
        Hubs' LOAD figures come too, fresh."""
        peers = await self._holders_elsewhere(space_id)
        for gone in [k for k in self._seen if k[2] == space_id and k[:2] not in peers]:
            del self._seen[gone]
        if not peers:
            return []
        answers = await asyncio.gather(
            *(self._views_of(space_id, r, url, load) for r, url in peers)
        )
        return [view for views in answers for view in views]

    async def _views_of(
        self, space_id: str, replica: str, peer_url: str, load: bool
    ) -> list[RemoteView]:
        key = (replica, peer_url, space_id)
        seen = None if load else self._seen.get(key)
        path = f"/v1/spaces/{quote(space_id, safe='')}/hubs?load={int(load)}"
        got = await self._get(
            replica, peer_url, path, [(b"if-none-match", seen[0])] if seen else []
        )
        if got is None:
            return []
        status, tag, answer = got
        if status == 304 and seen is not None:
            return list(seen[1].values())
        if not isinstance(answer, dict):
            return []
        before = {} if seen is None else seen[1]
        views: dict[str, RemoteView] = {}
        for raw in answer.get("hubs") or []:
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue
            hub_id, epoch, healthy = raw["id"], int(raw.get("epoch") or 0), bool(raw.get("healthy"))
            prior = before.get(hub_id)
            if prior is not None and (prior.epoch, prior.state.changes, prior.healthy) == (
                epoch,
                raw.get("changes"),
                healthy,
            ):
                views[hub_id] = prior  # what the lists show of it is what they showed
                continue
            route = routing.HubRoute(replica, peer_url, epoch)
            remote = self._remote(space_id, hub_id, route, reroute=True)
            state = HubState.from_snapshot(hub_id, raw)
            views[hub_id] = RemoteView(
                space_id, hub_id, state, healthy, remote.client, epoch, replica
            )
        if tag is not None and not load:
            self._seen[key] = (tag, views)
        return list(views.values())

    async def _ask(self, replica: str, peer_url: str, path: str) -> dict[str, Any] | None:
        got = await self._get(replica, peer_url, path)
        return got[2] if got is not None and isinstance(got[2], dict) else None

    async def _get(
        self,
        replica: str,
        peer_url: str,
        path: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> tuple[int, bytes | None, Any] | None:
        """Status, ETag and parsed JSON body (None unless 200) of a peer route's answer; None
        (logged) when the replica did not answer in time or sensibly."""
        peer, base = self.peer_client(replica, peer_url)
        target = f"{base}{PEER_PREFIX}{path}".encode()

        async def get() -> tuple[int, bytes | None, bytes]:
            sent = [(SECRET_HEADER, self.secret.encode()), *(headers or [])]
            async with peer.stream(b"GET", target, sent) as response:
                body = await response.read()
            tag = next((v for n, v in response.headers if n == b"etag"), None)
            return response.status, tag, body

        try:
            status, tag, body = await asyncio.wait_for(get(), PEER_ASK_TIMEOUT_S)
            answer = json.loads(body) if status == 200 else None
        except (HubError, TimeoutError, ValueError) as exc:
            log.warning("replica %s did not answer %s: %s", replica, path, exc)
            return None
        if status not in (200, 304):
            log.warning("replica %s answered %s with %d", replica, path, status)
            return None
        return status, tag, answer

    async def returning(self, space_id: str, hub_id: str, row: Hub) -> LiveHub | RemoteHub | None:
        """A Hub not connected now whose tunnel the manager itself ended lately (a drain, a
        restart, a lost replica) is on its way back, perhaps through another replica: wait
        for it up to RETURN_WAIT_S rather than fail the request."""
        if not row.connected:
            since = now_ms() - (row.last_disconnected_ms or 0)
            if row.disconnect_reason not in MOVING or since > RETURN_WINDOW_S * 1000:
                return None
        return await self.moved(space_id, hub_id, None)

    async def moved(
        self, space_id: str, hub_id: str, epoch: int | None
    ) -> LiveHub | RemoteHub | None:
        """The Hub once it is back under another admission than `epoch` (its tunnel was
        closed by a drain, say), here or on another replica; None after RETURN_WAIT_S."""
        deadline = time.monotonic() + RETURN_WAIT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(RETURN_POLL_S)
            self.forget(space_id, hub_id)
            found = await self.find(space_id, hub_id)
            if found is None or found.epoch == epoch:
                continue
            if isinstance(found, LiveHub) and found.client.closed:
                continue
            return found
        return None

    def peer_topic(
        self, replica: str, space_id: str, name: str, content_type: str
    ) -> contextlib.AbstractAsyncContextManager[HubResponse]:
        """Another replica's board topic: what that replica's own producers write."""
        url = self._urls.get(replica)
        if url is None:
            raise HubUnavailable(f"replica {replica} is not known here")
        peer, base = self.peer_client(replica, url)
        space, topic = quote(space_id, safe=""), quote(name, safe="")
        target = f"{base}{PEER_PREFIX}/v1/spaces/{space}/topics/{topic}"
        headers = [(SECRET_HEADER, self.secret.encode()), (b"content-type", content_type.encode())]
        return peer.stream(b"GET", target.encode(), headers)

    def forget(self, space_id: str, hub_id: str) -> None:
        self._cache.pop((space_id, hub_id), None)

    def peer_client(self, replica: str, peer_url: str) -> tuple[HubClient, str]:
        """One keep-alive pool per peer replica, shared by every Hub it holds."""
        key = (replica, peer_url)
        pair = self._peers.get(key)
        if pair is None:
            source = PeerSource(replica, peer_url)
            pair = self._peers[key] = (HubClient(source, source.name), source.base)
        return pair

    def _remote(
        self, space_id: str, hub_id: str, route: routing.HubRoute, *, reroute: bool
    ) -> RemoteHub:
        peer, base = self.peer_client(route.replica, route.peer_url)

        async def again() -> WholeAnswers | None:
            self.forget(space_id, hub_id)
            fresh = await self.find(space_id, hub_id, reroute=False)
            return None if fresh is None else fresh.client

        client = RemoteHubClient(
            peer, base, space_id, hub_id, route.epoch, self.secret, again if reroute else None
        )
        return RemoteHub(space_id, hub_id, route.replica, route.epoch, client)
