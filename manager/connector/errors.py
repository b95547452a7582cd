"""The connector's one exception family, translated once at each boundary.

Channel handlers turn `LocalHubError` into a 502 (proxied calls) or a skipped LOAD (polls);
the reconnect loop logs and retries everything else. Nothing here imports asyncio or sockets.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of everything the connector raises on purpose."""


class UsageError(ConnectorError):
    """The command line does not describe a usable connection (reported before connecting)."""


class LocalHubError(ConnectorError):
    """The local Hub did not answer, or answered something that is not its API."""


class BadRequestHead(ConnectorError):
    """A channel did not start with an HTTP/1.1 request head we can route."""
