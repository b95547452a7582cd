"""Bearer-token authentication in front of every API route, plus path clean-up.

Pure ASGI so it also guards streaming routes. A principal already in the scope (set by the
tunnel for requests a Hub makes on behalf of its Space) is trusted as is. The path is
cleaned first because the clients collapse or double slashes (space-api.md §1.7).

The Panel (`/panel/`) signs its users in itself. Its JavaScript calls this API with the
Panel's session cookie instead of a bearer token (the token never reaches the page); such a
call must also carry the session's CSRF token in a header unless it only reads.
"""

from __future__ import annotations

import re

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from manager.panel.session import CSRF_HEADER, SESSION_COOKIE, PanelSessions
from manager.principal import Principal
from manager.services.tokens import TokenService
from manager.web.errors import DB_UNAVAILABLE, database_unavailable, error_response

_SLASHES = re.compile(r"/{2,}")
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/api/v1/openapi.json"})
PANEL_PREFIX = "/panel"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthMiddleware:
    def __init__(
        self, app: ASGIApp, tokens: TokenService, panel: PanelSessions | None = None
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.panel = panel

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
        if state.get("principal") is not None or path in PUBLIC_PATHS or _panel_page(path):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            # Tunnels authenticate with access keys inside their own endpoint.
            await self.app(scope, receive, send)
            return
        principal = None
        token = bearer_token(scope.get("headers", []))
        if token or self.panel is not None:
            try:
                if token:
                    principal = await self.tokens.authenticate(token)
                elif self.panel is not None:
                    principal = await self._panel_principal(scope)
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

    async def _panel_principal(self, scope: Scope) -> Principal | None:
        """The Panel session's user; an unsafe method needs the session's CSRF header."""
        assert self.panel is not None
        cookies = cookie_parser(_header(scope, b"cookie") or "")
        value = cookies.get(SESSION_COOKIE)
        if not value:
            return None
        if scope.get("method", "GET") not in SAFE_METHODS:
            session = self.panel.parse(value)
            offered = _header(scope, CSRF_HEADER.encode())
            if session is None or not self.panel.csrf_ok(session.nonce, offered):
                return None
        return await self.panel.principal(value)


def _panel_page(path: str) -> bool:
    return path == PANEL_PREFIX or path.startswith(PANEL_PREFIX + "/")


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == wanted:
            return str(value.decode("latin-1"))
    return None


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer` header (the first Authorization only)."""
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1").strip()
            if text[:7].lower() == "bearer ":
                return text[7:].strip() or None
            return None
    return None
