"""Every error leaves the API as JSON with the right status, never as a traceback."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as SQLTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import Scope

from manager.db.engine import describe_error
from manager.hubs.errors import HubError
from manager.services.errors import ServiceError

log = logging.getLogger("manager.web")

FORBIDDEN_BODY = {"message": "Forbidden"}


def error_response(
    status: int,
    message: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    if status == 403:
        return JSONResponse(FORBIDDEN_BODY, status_code=403)
    text = message or HTTPStatus(status).phrase
    return JSONResponse({"error": text, **extra}, status_code=status, headers=headers)


async def service_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.message, **exc.details)


async def hub_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubError)
    log.info("%d %s", exc.status, exc.message)
    return error_response(exc.status, exc.message)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail and exc.detail != HTTPStatus(exc.status_code).phrase else None
    if exc.status_code == 404 and detail is None:
        detail = "Not Found"
    resp = error_response(exc.status_code, detail)
    if exc.headers:
        resp.headers.update(exc.headers)
    if exc.status_code == 405:
        scope = request.scope
        top = {**scope, "root_path": scope.get("app_root_path", scope.get("root_path", ""))}
        resp.headers["allow"] = ", ".join(sorted(allowed_methods(request.app.routes, top)))
    return resp


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """Every method served at the path. Starlette's 405 names only those of the first route
    that matched the path, and many paths here are one route per method (RFC 9110 wants all)."""
    methods: set[str] = set()
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            methods |= allowed_methods(route.routes, {**scope, **child})
        elif isinstance(route, Route):
            methods |= route.methods or set()
    return methods


DB_UNAVAILABLE = "Database unavailable; try again shortly"


def database_unavailable(exc: BaseException) -> bool:
    """Errors that mean the database cannot be reached right now (not a bad query): a
    refused or dropped connection, a server shutting down or starting, a full pool."""
    if isinstance(exc, IntegrityError):
        return False
    return isinstance(exc, DBAPIError | SQLTimeoutError | ConnectionError | TimeoutError)


async def database_error(request: Request, exc: Exception) -> Response:
    if not database_unavailable(exc):
        return await unexpected_error(request, exc)
    log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, describe_error(exc)
    )
    return error_response(503, DB_UNAVAILABLE, headers={"retry-after": "2"})


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
    return error_response(500, "Internal Server Error")


HANDLERS = {
    ServiceError: service_error,
    HubError: hub_error,
    HTTPException: http_error,
    DBAPIError: database_error,
    SQLTimeoutError: database_error,
    ConnectionError: database_error,
    TimeoutError: database_error,
    Exception: unexpected_error,
}
