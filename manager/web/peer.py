"""The internal door between replicas: `/_peer/...`, open only with the peer secret.

`/_peer/api/v1/space/<S>/api/v1/sth/<H>/...` is a request another replica forwards for a Hub
this replica holds: it is checked here (secret, epoch header), stripped of the peer headers
and the prefix, and served by the ordinary proxy as the original caller (`x-mw-billable`
names them), which answers 409 if this replica no longer holds that epoch. The other
`/_peer/v1/...` routes (peer_routes.py) answer what only the holder knows.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from manager.common import org_id_of
from manager.hubs.peers import (
    EPOCH_HEADER,
    FORWARDED_PREFIX,
    PEER_PREFIX,
    SECRET_HEADER,
    secret_matches,
)
from manager.principal import Principal
from manager.web.errors import error_response

_PEER_HEADERS = (SECRET_HEADER, EPOCH_HEADER)

Headers = list[tuple[bytes, bytes]]


def forwarded_call(headers: Headers, space_id: str) -> tuple[Principal, int] | None:
    """Who a forwarded proxy call is made for (the original caller, named by the forwarder
    in `x-mw-billable`) and the Hub epoch it was routed at; None without a numeric epoch.
    The peer secret is checked before this."""
    epoch = next((v for n, v in headers if n == EPOCH_HEADER), b"")
    if not epoch.isdigit():
        return None
    requestor = next((v for n, v in headers if n == b"x-mw-billable"), b"")
    principal = Principal(
        org_id=org_id_of(space_id),
        token_id=requestor.decode("latin-1") or None,
        is_admin=True,
    )
    return principal, int(epoch)


def without_peer_headers(headers: Headers) -> Headers:
    return [(n, v) for n, v in headers if n not in _PEER_HEADERS]


class PeerMiddleware:
    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PEER_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        offered = next((v for n, v in headers if n == SECRET_HEADER), None)
        if not secret_matches(offered, self.secret):
            await error_response(403)(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if not path.startswith(FORWARDED_PREFIX):
            state["principal"] = Principal(org_id="", is_admin=True)
            await self.app(scope, receive, send)
            return
        found = forwarded_call(headers, path[len(FORWARDED_PREFIX) :].split("/", 1)[0])
        if found is None:
            await error_response(400, "x-manager-hub-epoch must be a number")(scope, receive, send)
            return
        state["principal"], state["peer_epoch"] = found
        inner = path[len(PEER_PREFIX) :]
        raw = scope.get("raw_path") or path.encode()
        scope = dict(
            scope,
            path=inner,
            raw_path=raw[len(PEER_PREFIX) :],
            headers=without_peer_headers(headers),
        )
        await self.app(scope, receive, send)
