"""The Panel as a Starlette sub-application mounted at /panel: routes, headers, error pages.

A sub-application of its own because its errors are pages in words, not the API's JSON,
and because every answer it gives carries a strict Content-Security-Policy (scripts and
styles only from /panel/static: no inline code for an injected string to become),
`X-Frame-Options: DENY` and `Cache-Control: no-store` (a page may show a key once).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from manager.panel import hub_routes, routes
from manager.panel.pages import SignInNeeded, redirect, render
from manager.panel.session import PanelSessions
from manager.services.context import Services
from manager.services.errors import Forbidden, ServiceError
from manager.web.common import HttpMiddleware, RawHeaders, editing_headers
from manager.web.errors import DB_UNAVAILABLE, database_unavailable

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
STATIC = Path(__file__).parent / "static"
FORBIDDEN = "This Space does not exist or is not yours to see."


class SecurityHeaders(HttpMiddleware):
    """Adds the Panel's headers to every answer, error pages and static files included."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        static = scope.get("path", "").startswith("/panel/static/")
        cache = (b"cache-control", b"no-cache" if static else b"no-store")

        def edit(headers: RawHeaders) -> RawHeaders:
            return [*(h for h in headers if h[0] != b"cache-control"), *HEADERS, cache]

        await self.app(scope, receive, editing_headers(send, edit))


async def sign_in_needed(request: Request, _exc: Exception) -> Response:
    if request.url.path.startswith(("/panel/space/", "/panel/spaces")) and _is_fragment(request):
        return Response("Signed out", status_code=401, media_type="text/plain")
    return redirect("/signin")


def _is_fragment(request: Request) -> bool:
    return request.headers.get("x-panel-fragment") == "1"


def _error_page(request: Request, status: int, message: str) -> Response:
    if _is_fragment(request):
        return Response(message, status_code=status, media_type="text/plain")
    return render(request, "error.html", {"status": status, "message": message}, status=status)


async def service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    message = FORBIDDEN if isinstance(exc, Forbidden) else exc.message
    return _error_page(request, exc.status, message)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "There is no such page in the Panel." if exc.status_code == 404 else exc.detail
    return _error_page(request, exc.status_code, message)


async def other_error(request: Request, exc: Exception) -> Response:
    if database_unavailable(exc):
        response = _error_page(request, 503, DB_UNAVAILABLE)
        response.headers["retry-after"] = "2"
        return response
    return _error_page(request, 500, "Something went wrong on the manager; see its log.")


def create_panel(svc: Services, sessions: PanelSessions) -> Starlette:
    app = Starlette(
        routes=[
            *routes.routes,
            *hub_routes.routes,
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            SignInNeeded: sign_in_needed,
            ServiceError: service_error,
            HTTPException: http_error,
            DBAPIError: other_error,
            SQLTimeoutError: other_error,
            ConnectionError: other_error,
            TimeoutError: other_error,
            Exception: other_error,
        },
    )
    app.state.services = svc
    app.state.panel = sessions
    return app
