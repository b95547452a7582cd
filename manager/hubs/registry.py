"""Which Hub is connected where, in this replica: the live side of the Hub table.

Owns the in-memory map (Space, Hub id) → LiveHub and the rules that need it at once:
id conflicts, per-Space limits, which tunnels a revoked key must lose. It does not speak
HTTP or SQL; `manager.hubs.service` persists what happens here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from manager.hubs.announcements import TopicAnnouncements
from manager.hubs.client import HubClient
from manager.hubs.state import HubState


class HubLink(Protocol):
    """What the registry needs from a tunnel, whatever carries it."""

    client: HubClient

    async def send_control(self, code: int, payload: Any) -> None: ...

    async def send_and_close(self, code: int, reason: str) -> None: ...

    async def close(self, reason: str) -> None: ...


@dataclass(eq=False)
class LiveHub:
    space_id: str
    hub_id: str
    link: HubLink
    access_key_id: int | None = None
    source: str = ""
    state: HubState = field(init=False)
    connected_at: float = field(default_factory=time.monotonic)
    db_id: int | None = None
    connected_ms: int | None = None
    epoch: int = 0  # this admission's, from SQL (manager.replicas: stale routes)
    load_dirty: bool = False
    # The STH itself (CONNECT) announces every topic a client POSTs to it and waits for that
    # write before it listens for the request's end; Hubs joined by `space-manager connect`
    # are announced by the connector's polling instead (see announcements.py).
    announces_topic_posts: bool = True
    topic_announcements: TopicAnnouncements = field(default_factory=TopicAnnouncements)
    delivered: dict[str, str] = field(default_factory=dict)  # stored Sequence → the Hub's id

    def __post_init__(self) -> None:
        self.state = HubState(hub_id=self.hub_id)

    @property
    def client(self) -> HubClient:
        """The one way to make HTTP requests to this Hub."""
        return self.link.client

    @property
    def in_flight(self) -> int:
        """Requests to the Hub now in progress (proxied and the manager's own)."""
        return self.link.client.in_flight


ALIVE_WITHIN_S = 7.0  # a live Hub sends LOAD every 5 s


def tunnel_alive(hub: LiveHub) -> bool:
    """Whether the Hub's tunnel carried anything lately (a newcomer with its id may take
    over a silent one, not a live one)."""
    session = getattr(hub.link, "session", None)
    if session is None:
        return True
    if session.is_closed:
        return False
    return bool(time.monotonic() - session.last_frame_at < ALIVE_WITHIN_S)


class HubRegistry:
    def __init__(self, healthy_after_s: float = 15.0) -> None:
        self._live: dict[tuple[str, str], LiveHub] = {}
        self._by_space: dict[str, dict[str, LiveHub]] = {}
        self.healthy_after_s = healthy_after_s

    def get(self, space_id: str, hub_id: str) -> LiveHub | None:
        return self._live.get((space_id, hub_id))

    def in_space(self, space_id: str) -> list[LiveHub]:
        return list(self._by_space.get(space_id, {}).values())

    def count(self, space_id: str) -> int:
        return len(self._by_space.get(space_id, {}))

    def __iter__(self) -> Iterator[LiveHub]:
        return iter(list(self._live.values()))

    def __len__(self) -> int:
        return len(self._live)

    def attach(self, hub: LiveHub) -> bool:
        """Register a Hub; False when another tunnel already holds that id."""
        key = (hub.space_id, hub.hub_id)
        if key in self._live:
            return False
        self._live[key] = hub
        self._by_space.setdefault(hub.space_id, {})[hub.hub_id] = hub
        return True

    def detach(self, hub: LiveHub) -> bool:
        """Forget a Hub if this exact LiveHub is the registered one."""
        key = (hub.space_id, hub.hub_id)
        if self._live.get(key) is not hub:
            return False
        del self._live[key]
        space = self._by_space.get(hub.space_id)
        if space is not None:
            space.pop(hub.hub_id, None)
            if not space:
                del self._by_space[hub.space_id]
        return True

    def healthy(self, hub: LiveHub, now: float | None = None) -> bool:
        return hub.state.healthy(self.healthy_after_s, now)

    def joined_with(self, key_ids: set[int]) -> list[LiveHub]:
        return [h for h in self._live.values() if h.access_key_id in key_ids]
