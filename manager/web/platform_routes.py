"""Middleware-level endpoints (space-api.md §3.1): version, Spaces, access keys, and the
platform admin's plans and limits (ours; `manager.services.plans` has the rules)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from manager import __version__
from manager.services import plans
from manager.services.audit_stream import audit_lines
from manager.services.errors import Forbidden, Invalid, LimitExceeded
from manager.services.metrics import CONTENT_TYPE as METRICS_TYPE
from manager.services.spaces import create_space, visible_spaces
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


async def new_space(request: Request) -> Response:
    """A Space in the caller's organization (admins: `orgId` names any), within its plan."""
    body = await json_object(request, 'Expected a JSON object like {"name": "..."}')
    who = principal(request)
    org_id = body.get("orgId", who.org_id)
    name = body.get("name", "")
    if not isinstance(org_id, str) or not isinstance(name, str) or "\x00" in org_id + name:
        raise Invalid("orgId and name must be strings (without NUL characters)")
    if org_id != who.org_id and not who.is_admin:
        raise Forbidden()
    svc = services(request)
    try:
        async with svc.sessions() as s, s.begin():
            made = await create_space(s, org_id, name)
    except LimitExceeded:
        svc.quotas.refused(plans.SPACES)
        raise
    return JSONResponse({"id": made.id, "name": made.name, "orgId": made.org_id})


async def json_object(request: Request, shape: str, *, required: bool = False) -> dict[str, object]:
    """The JSON object body; without `required`, an empty body or `null` is `{}`."""
    body = await json_body(request, default=None if required else {})
    if not isinstance(body, dict):
        raise Invalid(shape)
    return body


def admin_only(request: Request) -> None:
    if not principal(request).is_admin:
        raise Forbidden()


async def list_plans(request: Request) -> Response:
    admin_only(request)
    async with services(request).sessions() as s:
        rows = await plans.list_plans(s)
    return JSONResponse({"plans": [p.as_json() for p in rows]})


async def create_plan(request: Request) -> Response:
    admin_only(request)
    body = await json_object(
        request, 'Expected a JSON object like {"name": "small", ...}', required=True
    )
    name = body.pop("name", None)
    values = plans.parse_values(body, tuple(plans.COLUMNS))
    svc = services(request)
    async with svc.sessions() as s, s.begin():
        made = await plans.create_plan(s, name, values)
    await svc.quotas.refresh()
    return JSONResponse(made.as_json(), status_code=201)


async def update_plan(request: Request) -> Response:
    admin_only(request)
    body = await json_object(request, 'Expected a JSON object like {"hubsPerSpace": 2}')
    values = plans.parse_values(body, tuple(plans.COLUMNS))
    svc = services(request)
    async with svc.sessions() as s, s.begin():
        changed = await plans.update_plan(s, request.path_params["name"], values)
    await svc.quotas.refresh()
    return JSONResponse(changed.as_json())


async def set_org_plan(request: Request) -> Response:
    admin_only(request)
    body = await json_object(
        request, 'Expected a JSON object like {"plan": "small"}', required=True
    )
    name = body.get("plan")
    if not isinstance(name, str):
        raise Invalid('Expected a JSON object like {"plan": "small"}')
    svc = services(request)
    org_id = request.path_params["org"]
    async with svc.sessions() as s, s.begin():
        plan = await plans.set_org_plan(s, org_id, name)
    await svc.quotas.refresh()
    return JSONResponse({"orgId": org_id, "plan": plan.as_json()})


async def set_space_limits(request: Request) -> Response:
    admin_only(request)
    body = await json_object(
        request, 'Expected a JSON object like {"hubsPerSpace": 2}', required=True
    )
    values = plans.parse_values(body, plans.SPACE_LIMITS, space=True)
    svc = services(request)
    async with svc.sessions() as s, s.begin():
        limits = await plans.set_space_limits(s, request.path_params["space"], values)
    await svc.quotas.refresh()
    return JSONResponse(limits)


async def list_keys(request: Request) -> Response:
    space = await caller_space(request)
    async with services(request).sessions() as s:
        keys = await services(request).keys.list_keys(s, space.id)
    return JSONResponse({"accessKeys": keys})


async def create_key(request: Request) -> Response:
    space = await caller_space(request)
    body = await json_object(request, 'Expected a JSON object like {"description": "..."}')
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
    admin_only(request)
    return Response(services(request).metrics.render(), headers={"content-type": METRICS_TYPE})


routes = [
    Route("/api/v1/version", version, methods=["GET"]),
    Route("/api/v1/metrics", metrics, methods=["GET"]),
    Route("/api/v1/spaces", spaces, methods=["GET"]),
    Route("/api/v1/spaces", new_space, methods=["POST"]),
    Route("/api/v1/plans", list_plans, methods=["GET"]),
    Route("/api/v1/plans", create_plan, methods=["POST"]),
    Route("/api/v1/plans/{name}", update_plan, methods=["PATCH"]),
    Route("/api/v1/org/{org}/plan", set_org_plan, methods=["PUT"]),
    Route("/api/v1/space/{space}/limits", set_space_limits, methods=["PUT"]),
    Route("/api/v1/audit", audit_all, methods=["GET"]),
    Route("/api/v1/space/{space}/apikey", list_keys, methods=["GET"]),
    Route("/api/v1/space/{space}/apikey", create_key, methods=["POST"]),
    Route("/api/v1/space/{space}/apikey", revoke_keys, methods=["DELETE"]),
]
