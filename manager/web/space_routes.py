"""Space-level endpoints (space-api.md §3.2) over the aggregated Space view."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from manager import __version__
from manager.db import repo
from manager.services import hub_admin, plans, space_log, space_view
from manager.services.audit_stream import audit_lines
from manager.services.errors import NotFound
from manager.services.space_hubs import AnyHub, SpaceHubs, space_hubs
from manager.web import store_routes, topic_routes
from manager.web.common import caller_space, json_body, principal, services
from manager.web.proxy import HubProxy

VERSION = {
    "service": "@scramjet/manager",
    "apiVersion": "v1",
    "version": __version__,
    "build": "source",
}


async def version(request: Request) -> Response:
    await caller_space(request)
    return JSONResponse(VERSION)


async def connected(request: Request, space_id: str, *, load: bool = False) -> SpaceHubs:
    """The Space's connected Hubs on every replica (with their LOAD figures: `load`)."""
    svc = services(request)
    return await space_hubs(svc.registry, svc.routes, space_id, load=load)


async def load(request: Request) -> Response:
    space = await caller_space(request)
    return JSONResponse(space_view.load(await connected(request, space.id, load=True), space.id))


async def hub_list(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    # The live Hubs before the rows: a Hub leaves the registry only after its disconnect is
    # committed, so the two never disagree the other way.
    hubs = await connected(request, space.id)
    live = {h.hub_id: h for h in hubs.in_space(space.id)}
    async with svc.sessions() as s:
        rows = await svc.listing.rows(s, space.id, alone=not svc.lease.others_alive)
    body = svc.listing.render(space.id, rows, hubs, live)
    return Response(body, media_type="application/json")


async def hub_info(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    hub_id = request.path_params["hub"]
    hubs = await connected(request, space.id)
    live = hubs.get(space.id, hub_id)  # before the row, as in hub_list
    async with svc.sessions() as s:
        row = await repo.get_hub(s, space.id, hub_id)
    if row is None:
        raise NotFound(f"Hub {hub_id} not found")
    return JSONResponse(space_view.hub_info(row, live, hubs, time.monotonic()))


async def config(request: Request) -> Response:
    """The Space's settings, with each limit of its plan and what it uses now."""
    space = await caller_space(request)
    svc = services(request)
    settings = svc.settings
    async with svc.sessions() as s:
        limits = await plans.space_usage(
            s,
            space.id,
            space.org_id,
            await svc.routes.connected_count(space.id),
            settings.hub_limit,
        )
    return JSONResponse(
        {
            "config": {
                "id": space.id,
                "orgId": space.org_id,
                "name": space.name,
                "apiBase": "/api/v1",
                "hubLimit": limits[plans.HUBS]["limit"] or 0,
                "limits": limits,
                "healthyAfterSeconds": settings.healthy_after_s,
                "version": __version__,
            }
        }
    )


async def sequences(request: Request) -> Response:
    space = await caller_space(request)
    return JSONResponse(space_view.sequences(await connected(request, space.id), space.id))


async def instances(request: Request) -> Response:
    space = await caller_space(request)
    return JSONResponse(space_view.instances(await connected(request, space.id), space.id))


async def topics(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    hubs = await connected(request, space.id)
    return JSONResponse(space_view.topics(hubs, space.id, svc.topics.in_space(space.id)))


async def entities(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    async with svc.sessions() as s:
        rows = await repo.list_hubs(s, space.id)
    ids = [r.hub_id for r in rows]
    return JSONResponse(space_view.entities(await connected(request, space.id), space.id, ids))


async def merged_log(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)

    async def hubs() -> list[AnyHub]:
        return (await space_hubs(svc.registry, svc.routes, space.id)).in_space(space.id)

    stream = space_log.merged_logs(hubs)
    return StreamingResponse(stream, media_type="application/octet-stream")


async def audit_stream(request: Request) -> Response:
    space = await caller_space(request)
    lines = audit_lines(services(request).sessions, [space.id])
    return StreamingResponse(lines, media_type="application/x-ndjson")


async def disconnect(request: Request) -> Response:
    space = await caller_space(request)
    body = await json_body(request, default={})
    svc = services(request)
    async with svc.sessions() as s:
        dropped = await hub_admin.disconnect(s, svc.registry, svc.keys, svc.events, space.id, body)
    return JSONResponse({"managerId": space.id, "disconnected": dropped})


async def delete_hub(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    force = request.headers.get("x-force", "").strip().lower() == "true"
    async with svc.sessions() as s, s.begin():
        await hub_admin.delete_hub(
            s,
            svc.registry,
            svc.events,
            space.id,
            request.path_params["hub"],
            force,
            principal(request).requestor,
        )
    svc.listing.invalidate(space.id)
    return JSONResponse({})


async def health(request: Request) -> Response:
    await caller_space(request)
    svc = services(request)
    return JSONResponse(
        {
            "uptime": round(time.monotonic() - svc.started, 3),
            "timestamp": int(time.time() * 1000),
            "modules": {"database": True, "tunnels": True},
        }
    )


routes = [
    Mount(
        "/api/v1/space/{space}/api/v1",
        routes=[
            # The Hub API first: the hot path, and no other route's path starts with it.
            Route("/sth/{hub}/api/v1", HubProxy()),
            Route("/sth/{hub}/api/v1/{rest:path}", HubProxy()),
            Route("/version", version, methods=["GET"]),
            Route("/load", load, methods=["GET"]),
            Route("/load-check", load, methods=["GET"]),
            Route("/list", hub_list, methods=["GET"]),
            Route("/sth/{hub}/info", hub_info, methods=["GET"]),
            Route("/config", config, methods=["GET"]),
            Route("/sequences", sequences, methods=["GET"]),
            Route("/instances", instances, methods=["GET"]),
            Route("/topics", topics, methods=["GET"]),
            Route("/entities", entities, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/log", merged_log, methods=["GET"]),
            Route("/audit", audit_stream, methods=["GET"]),
            Route("/disconnect", disconnect, methods=["POST"]),
            Route("/sth/{hub}", delete_hub, methods=["DELETE"]),
            *store_routes.routes,
            *topic_routes.routes,
        ],
    )
]
