"""The Starlette application, assembled as data: routes, middleware, error handlers, lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from manager.panel.app import create_panel
from manager.panel.session import PanelSessions
from manager.services.context import Services
from manager.web import (
    health_routes,
    openapi,
    peer_routes,
    platform_routes,
    space_routes,
    tunnel_routes,
)
from manager.web.auth import AuthMiddleware
from manager.web.errors import HANDLERS
from manager.web.peer import PeerMiddleware
from manager.web.rate_limit import RateLimitMiddleware
from manager.web.request_id import RequestIdMiddleware


async def root(_request: Request) -> Response:
    return JSONResponse({"service": "space-manager", "api": "/api/v1"})


def create_app(svc: Services, *, own_services: bool = False) -> Starlette:
    """Build the app around `svc`; with `own_services` the lifespan disposes of them."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await svc.supervisor.start()
        await svc.lease.start()
        await svc.events.start()
        svc.audit.start()
        svc.router.start()
        try:
            yield
        finally:
            await svc.router.stop()
            await svc.supervisor.stop()
            await svc.events.stop()
            await svc.lease.stop()
            await svc.audit.stop()
            if own_services:
                await svc.aclose()

    panel = PanelSessions(svc.secret, svc.sessions)
    app = Starlette(
        routes=[
            Route("/", root, methods=["GET"]),
            *health_routes.routes,
            Route("/api/v1/openapi.json", openapi.serve, methods=["GET"]),
            # The Space routes first: the proxied Hub API is the hot path, and no platform
            # route's path starts with a Space's `/api/v1/space/<id>/api/v1/`.
            *space_routes.routes,
            *platform_routes.routes,
            *tunnel_routes.routes,
            *peer_routes.routes,
            Mount("/panel", app=create_panel(svc, panel)),
        ],
        middleware=[
            Middleware(RequestIdMiddleware),
            Middleware(PeerMiddleware, secret=svc.peer_secret),
            Middleware(AuthMiddleware, tokens=svc.tokens, panel=panel),
            Middleware(RateLimitMiddleware, quotas=svc.quotas),
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.services = svc
    svc.gate.app = app
    return app
