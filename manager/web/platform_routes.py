"""Middleware-level endpoints (space-api.md §3.1): version, Spaces, access keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from manager import __version__
from manager.services.audit_stream import audit_lines
from manager.services.errors import Forbidden, Invalid
from manager.services.metrics import collect as collect_metrics
from manager.services.metrics import render as render_metrics
from manager.services.spaces import visible_spaces
from manager.web.common import caller_space, json_body, principal, services

VERSION = {
    "service": "@scramjet/middleware",
    "apiVersion": "v1",
    "version": __version__,
    "build": "source",
}


async def version(_request: Request) -> Response:
    return JSONResponse(VERSION)


async def spaces(request: Request) -> Response:
    svc = services(request)
    async with svc.sessions() as s:
        rows = await visible_spaces(s, principal(request))
    return JSONResponse([{"id": r.id, "name": r.name, "orgId": r.org_id} for r in rows])


async def list_keys(request: Request) -> Response:
    space = await caller_space(request)
    async with services(request).sessions() as s:
        keys = await services(request).keys.list_keys(s, space.id)
    return JSONResponse({"accessKeys": keys})


async def create_key(request: Request) -> Response:
    space = await caller_space(request)
    body = await json_body(request, default={})
    if not isinstance(body, dict):
        raise Invalid('Expected a JSON object like {"description": "..."}')
    svc = services(request)
    async with svc.sessions() as s, s.begin():
        made = await svc.keys.create(
            s, space.id, body.get("description"), principal(request).requestor
        )
    return JSONResponse(
        {"accessKey": made.key, "created": made.created_ms, "description": made.description}
    )


async def revoke_keys(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    who = principal(request).requestor
    if request.headers.get("x-revoke-all", "").strip().lower() == "true":
        async with svc.sessions() as s, s.begin():
            rows = await svc.keys.revoke_all_rows(s, space.id, who)
        await svc.keys.announce_revoked(space.id, rows)
        return JSONResponse(
            {"message": f"{len(rows)} access keys revoked", "keysRevoked": len(rows)}
        )
    ident = request.headers.get("x-revoke", "").strip()
    if not ident:
        raise Invalid("Name the key to revoke in x-revoke (its created id) or send x-revoke-all")
    async with svc.sessions() as s, s.begin():
        row = await svc.keys.revoke(s, space.id, ident, who)
    await svc.keys.announce_revoked(space.id, [row])
    return JSONResponse(
        {"message": "Access key revoked", "keysRevoked": 1, "created": row.created_ms}
    )


async def audit_all(request: Request) -> Response:
    svc = services(request)
    async with svc.sessions() as s:
        ids = [sp.id for sp in await visible_spaces(s, principal(request))]
    return StreamingResponse(audit_lines(svc.sessions, ids), media_type="application/x-ndjson")


async def metrics(request: Request) -> Response:
    """Prometheus text; platform admins only, since it counts every Space's Hubs."""
    if not principal(request).is_admin:
        raise Forbidden()
    text = render_metrics(collect_metrics(services(request)))
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


routes = [
    Route("/api/v1/version", version, methods=["GET"]),
    Route("/api/v1/metrics", metrics, methods=["GET"]),
    Route("/api/v1/spaces", spaces, methods=["GET"]),
    Route("/api/v1/audit", audit_all, methods=["GET"]),
    Route("/api/v1/space/{space}/apikey", list_keys, methods=["GET"]),
    Route("/api/v1/space/{space}/apikey", create_key, methods=["POST"]),
    Route("/api/v1/space/{space}/apikey", revoke_keys, methods=["DELETE"]),
]
