"""A Space's connected Hubs across every replica, for the Space's lists and its `/log`.

The Hubs held here come from the registry; those other replicas hold are asked of their
holders at the time of the call (`HubRoutes.remote_views`), not copied into SQL: a list is
then as fresh as the control channels, and the LOAD path writes nothing more (a holder with
nothing changed answers 304: manager.services.held_hubs). With one replica (or none other
holding a Hub of the Space) it costs one indexed SQL read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from manager.hubs.registry import HubRegistry, LiveHub
from manager.hubs.routing import HubRoutes, RemoteView

AnyHub = LiveHub | RemoteView


class SpaceHubs:
    """The same questions the registry answers, over local and remote Hubs together."""

    def __init__(self, registry: HubRegistry, hubs: list[AnyHub]) -> None:
        self.registry = registry
        self._hubs = {h.hub_id: h for h in hubs}

    def in_space(self, space_id: str) -> list[AnyHub]:
        return [h for h in self._hubs.values() if h.space_id == space_id]

    def get(self, space_id: str, hub_id: str) -> AnyHub | None:
        hub = self._hubs.get(hub_id)
        return hub if hub is not None and hub.space_id == space_id else None

    def count(self, space_id: str) -> int:
        return len(self.in_space(space_id))

    def healthy(self, hub: AnyHub, now: float | None = None) -> bool:
        if isinstance(hub, RemoteView):
            return hub.healthy
        return self.registry.healthy(hub, now if now is not None else time.monotonic())

    def __iter__(self) -> Iterator[AnyHub]:
        return iter(list(self._hubs.values()))


async def space_hubs(
    registry: HubRegistry, routes: HubRoutes, space_id: str, *, load: bool = False
) -> SpaceHubs:
    """With `load`, the remote Hubs carry their LOAD figures (for `/load` and placement);
    the lists do without, and are answered from unchanged views when nothing changed."""
    local: list[AnyHub] = list(registry.in_space(space_id))
    here = {h.hub_id for h in local}
    views = await routes.remote_views(space_id, load=load)
    remote: list[AnyHub] = [v for v in views if v.hub_id not in here]
    return SpaceHubs(registry, local + remote)
