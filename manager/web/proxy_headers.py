"""Which headers cross the proxy, each way: the client's to the Hub, the Hub's to the client.

Hop-by-hop fields (RFC 9110 7.6.1), those a `Connection` field names, and the manager's own
(the caller's credentials, the request id it sets) never pass; the caller's id for the Hub
(`x-mw-billable`) and the request id are added on the way in.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"expect",
        b"host",
        b"authorization",
        b"cookie",
        b"x-mw-billable",
        b"content-length",
        b"x-request-id",  # ours replaces it both ways (manager/web/request_id.py)
    }
)
# What the Hub's answer may not pass on (the request's id is ours, added by the middleware).
# Nor its Date: the server adds its own to every answer, and two Date fields (three through
# a forwarding replica) are invalid HTTP (RFC 9110 5.3, 6.6.1).
_NOT_RETURNED = (
    HOP_BY_HOP - {b"content-length", b"authorization", b"cookie", b"x-mw-billable"}
) | {b"date"}


def forwarded_headers(headers: Headers, requestor: str, request_id: str = "") -> Headers:
    """The client's headers minus hop-by-hop ones (and those `Connection` names), plus the
    caller's id for the Hub and the request's id."""
    named = _connection_named(headers)
    out = [(name, value) for name, value in headers if _passes(name.lower(), HOP_BY_HOP, named)]
    out.append((b"x-mw-billable", requestor.encode()))
    if request_id:
        out.append((b"x-request-id", request_id.encode()))
    return out


def returned_headers(headers: Headers) -> Headers:
    """The Hub's answer's headers the client gets, names lower-cased."""
    named = _connection_named(headers)
    return [
        (name.lower(), value)
        for name, value in headers
        if _passes(name.lower(), _NOT_RETURNED, named)
    ]


def _connection_named(headers: Headers) -> set[bytes]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }


def _passes(lower: bytes, dropped: frozenset[bytes], named: set[bytes]) -> bool:
    return lower not in dropped and lower not in named and not lower.startswith(b"proxy-")
