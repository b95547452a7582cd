"""What can go wrong talking to a Hub, as one family; the web layer maps each to a status once.

A leaf module (imports nothing of ours) so services and web code can catch these without
reaching into the tunnel layer's own exceptions.
"""

from __future__ import annotations


class HubError(Exception):
    """Base: the Hub could not be reached or did not answer properly. `status` is the HTTP
    status a client of the manager sees for it."""

    status = 502

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HubUnavailable(HubError):
    """No tunnel to the Hub (never connected, or it closed)."""

    status = 503


class HubBusy(HubError):
    """The Hub already has as many requests in flight as the manager allows."""

    status = 429


class HubTimeout(HubError):
    """The Hub did not accept a channel in time."""

    status = 504


class HubGone(HubError):
    """The tunnel or channel dropped in the middle of an exchange."""

    status = 502


class HubProtocolError(HubError):
    """The Hub's answer was not valid HTTP/1.1."""

    status = 502
