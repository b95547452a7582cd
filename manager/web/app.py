"""The Starlette application, assembled as data: routes, middleware, error handlers, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable

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
from manager.web.rate_limit import RateLimiter, RateLimitMiddleware
from manager.web.request_id import RequestIdMiddleware

log = logging.getLogger("manager.web")

# A stop step that overruns this is abandoned (with its stack logged) so the process still
# exits: the supervisor's own wait for tunnels to record their disconnects is 5 s.
STOP_STEP_S = 10.0


async def _stop_step(name: str, step: Awaitable[None]) -> None:
    """Run one shutdown step, bounded; a step that hangs is named in the log with where it
    hangs, and the next steps still run."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=STOP_STEP_S)
    if not done:
        where = io.StringIO()
        task.print_stack(file=where)
        log.warning(
            "shutdown: %s did not stop in %.0f s; abandoned at:\n%s",
            name,
            STOP_STEP_S,
            where.getvalue(),
        )
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return
    if task.exception() is not None:
        log.warning("shutdown: %s failed: %r", name, task.exception())


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
            await _stop_step("topic router", svc.router.stop())
            await _stop_step("hub supervisor", svc.supervisor.stop())
            await _stop_step("event listener", svc.events.stop())
            await _stop_step("replica lease", svc.lease.stop())
            await _stop_step("audit writer", svc.audit.stop())
            if own_services:
                await _stop_step("services", svc.aclose())

    panel = PanelSessions(svc.secret, svc.sessions)
    limiter = RateLimiter(svc.quotas)
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
            Middleware(RateLimitMiddleware, limiter=limiter),
        ],
        exception_handlers=HANDLERS,
        lifespan=lifespan,
    )
    app.state.services = svc
    app.state.rate_limiter = limiter  # the fast lane counts against the same buckets
    svc.gate.app = app
    return app
