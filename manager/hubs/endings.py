"""Why the manager ends a Hub's tunnel, as one set of names.

These words travel: into the Hub row's `disconnectReason` (si and the Panel show them), into
logs, and to the web layer, which turns some into WebSocket close codes a connector acts on.
An enum keeps the layers from matching each other's strings. Each value is the text users
already see, so nothing they read changes.
"""

from __future__ import annotations

from enum import StrEnum


class Ending(StrEnum):
    ID_TAKEN = "id already connected"
    HUB_LIMIT = "hub limit reached"
    KEY_REVOKED = "access key revoked"
    DISCONNECTED = "disconnected by the Space"
    REPLACED = "replaced by a new connection"
    SHUTDOWN = "manager shutting down"
    DRAINING = "manager draining; reconnect"  # the Hub should join another replica
    RESTARTED = "manager restarted"  # the replica holding the tunnel started again
    REPLICA_LOST = "manager replica lost"  # its lease ran out: crashed, or cut off
    BUSY = "manager busy; reconnect"  # no admission slot in time (manager.hubs.admission)


# The manager ended these tunnels itself; their Hubs reconnect at once, through another
# replica if need be, so a request for one may wait a moment instead of failing.
MOVING = frozenset({Ending.DRAINING, Ending.SHUTDOWN, Ending.RESTARTED, Ending.REPLICA_LOST})
