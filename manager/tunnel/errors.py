"""Exceptions of the tunnel layer; callers above translate them once (e.g. to 502/504)."""

from __future__ import annotations


class TunnelError(Exception):
    """Base of everything the tunnel layer raises."""


class TunnelClosed(TunnelError):
    """The carrier is gone; no channel of it can be used any more."""


class ChannelReset(TunnelError):
    """The channel ended abnormally (peer error, or the tunnel died under it)."""


class ChannelOpenTimeout(TunnelError):
    """The peer did not answer our channel HANDSHAKE in time."""


class TooManyChannels(TunnelError):
    """The per-tunnel channel limit is reached."""
