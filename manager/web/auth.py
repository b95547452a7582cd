"""Bearer-token authentication in front of every API route, plus path clean-up.

Pure ASGI so it also guards streaming routes. A principal already in the scope (set by the
tunnel for requests a Hub makes on behalf of its Space) is trusted as is. The path is
cleaned first because the clients collapse or double slashes (space-api.md §1.7).
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from manager.services.tokens import TokenService
from manager.web.errors import DB_UNAVAILABLE, database_unavailable, error_response

_SLASHES = re.compile(r"/{2,}")
PUBLIC_PATHS = frozenset({"/", "/healthz", "/api/v1/openapi.json"})


class AuthMiddleware:
    def __init__(self, app: ASGIApp, tokens: TokenService) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        if "//" in path:
            path = _SLASHES.sub("/", path)
            scope = dict(scope, path=path, raw_path=path.encode())
        if "\x00" in path and scope["type"] == "http":  # no id has one; PostgreSQL text can't
            refusal = error_response(400, "NUL characters are not allowed in paths")
            await refusal(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        if state.get("principal") is not None or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Tunnels authenticate with access keys inside their own endpoint.
            await self.app(scope, receive, send)
            return
        principal = None
        token = _bearer(scope)
        if token:
            try:
                principal = await self.tokens.authenticate(token)
            except Exception as exc:
                if not database_unavailable(exc):
                    raise
                await error_response(503, DB_UNAVAILABLE, {"retry-after": "2"})(
                    scope, receive, send
                )
                return
        if principal is None:
            await error_response(403)(scope, receive, send)
            return
        state["principal"] = principal
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                return text[7:].strip() or None
            return None
    return None
