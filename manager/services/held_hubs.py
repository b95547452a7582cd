"""This replica's share of a Space's lists, as the other replicas ask for it (the peer route
`GET /_peer/v1/spaces/<S>/hubs`, read by `HubRoutes.remote_views`).

Why tagged and cached: on `serve --workers 2` with 10,000 Hubs, every `/list`, `/instances`
or `/sequences` answered by one worker asked the other for its 5,000 Hubs. py-spy put 1,247
of the holder's 1,512 samples for that route in `json.dumps`, and most of the asker's in
parsing the answer and building 5,000 views again; `/list` was 229 / 732 ms p50 / p99.
What those lists show of a Hub changes only with its control messages (`HubState.changes`),
its admission (epoch) and its health, so the answer carries an ETag over exactly those: an
asker holding the current one gets 304 and keeps its views, and a Hub's JSON is rendered
again only when its own part of the tag changed. LOAD figures change every few seconds and
are left out of that answer (`load=0`); who needs them (`/load`, placement, the Panel) asks
with `load=1` and gets every Hub's figures as they are now, untagged, as does a replica of
an older release that asks with neither.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from manager.hubs.registry import HubRegistry, LiveHub

Key = tuple[int, int, bool]  # epoch, changes, healthy


class HeldHubs:
    def __init__(self, registry: HubRegistry) -> None:
        self.registry = registry
        # A tag is only ever compared with one this process made: a restarted replica's
        # tags start over with another prefix, so an old tag cannot match by chance.
        self._boot = secrets.token_hex(4)
        self._parts: dict[str, dict[str, tuple[Key, str]]] = {}  # Space -> Hub -> JSON

    def render(
        self, space_id: str, replica: str, offered: str | None, *, load: bool = False
    ) -> tuple[str | None, bytes | None]:
        """(ETag, JSON body) of the Space's Hubs held here; the body is None when `offered`
        is the current tag (answer 304). With `load`: every Hub's LOAD too, and no tag."""
        now = time.monotonic()
        healthy = self.registry.healthy
        keyed = [
            (hub, (hub.epoch, hub.state.changes, healthy(hub, now)))
            for hub in self.registry.in_space(space_id)
        ]
        head = '{"replica":' + json.dumps(replica) + ',"hubs":['
        if load:
            texts = [_dumps(_entry(hub, key, with_load=True)) for hub, key in keyed]
            return None, (head + ",".join(texts) + "]}").encode()
        fingerprint = hash(tuple((hub.hub_id, key) for hub, key in keyed))
        tag = f'"{self._boot}-{len(keyed)}-{fingerprint & 0xFFFFFFFFFFFFFFFF:x}"'
        if offered == tag:
            return tag, None
        parts = self._parts.setdefault(space_id, {})
        texts = []
        for hub, key in keyed:
            cached = parts.get(hub.hub_id)
            if cached is None or cached[0] != key:
                cached = parts[hub.hub_id] = (key, _dumps(_entry(hub, key)))
            texts.append(cached[1])
        if len(parts) > len(keyed):  # Hubs gone since: forget their parts
            held = {hub.hub_id for hub, _ in keyed}
            for gone in [h for h in parts if h not in held]:
                del parts[gone]
        if not keyed:
            self._parts.pop(space_id, None)
        return tag, (head + ",".join(texts) + "]}").encode()


def _dumps(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"))


def _entry(hub: LiveHub, key: Key, *, with_load: bool = False) -> dict[str, Any]:
    snapshot = hub.state.snapshot()
    if not with_load:
        del snapshot["load"]
    return {"id": hub.hub_id, "epoch": key[0], "healthy": key[2], **snapshot}
