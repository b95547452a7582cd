"""Sequence store endpoints (space-api.md S9, S14–S17), the package download Hubs use
(spec §4.2 R1, `s3/undefined/<id>.tar.gz`), and the Space-level start."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from manager.db import repo
from manager.services import placement, space_view
from manager.services.errors import Invalid, NotFound
from manager.services.space_hubs import space_hubs
from manager.web.common import caller_space, json_body, services


async def list_store(request: Request) -> Response:
    space = await caller_space(request)
    return JSONResponse(await services(request).store_packages.list_configs(space.id))


async def put_store(request: Request) -> Response:
    space = await caller_space(request)
    seq_id = request.path_params.get("id")
    config = await services(request).store_packages.put(space.id, seq_id, request.stream())
    return JSONResponse(config)


async def delete_stored(request: Request) -> Response:
    space = await caller_space(request)
    await services(request).store_packages.remove(space.id, request.path_params["id"])
    return JSONResponse({"opStatus": "OK"})


async def clear_store(request: Request) -> Response:
    space = await caller_space(request)
    removed = await services(request).store_packages.clear(space.id)
    return JSONResponse({"removed": removed})


async def download_package(request: Request) -> Response:
    space = await caller_space(request)
    name = request.path_params["file"]
    if not name.endswith(".tar.gz"):
        raise NotFound("Not Found")
    path = await services(request).store_packages.package(space.id, name[: -len(".tar.gz")])
    return FileResponse(path, media_type="application/octet-stream")


async def all_sequences(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    hubs = await space_hubs(svc.registry, svc.routes, space.id)
    on_hubs = space_view.sequences(hubs, space.id)
    stored = [
        {"id": c["id"], "config": c, "instances": [], "location": "store"}
        for c in await svc.store_packages.list_configs(space.id)
    ]
    return JSONResponse(on_hubs + stored)


async def start_in_space(request: Request) -> Response:
    space = await caller_space(request)
    svc = services(request)
    body = await json_body(request, default={})
    if not isinstance(body, dict):
        raise Invalid("Expected a JSON object")
    selector = {k: body.pop(k) for k in ("hub", "tags") if k in body}
    async with svc.sessions() as s:
        rows = await repo.list_hubs(s, space.id)
    hubs = await space_hubs(svc.registry, svc.routes, space.id, load=True)  # the least loaded
    hub = placement.choose_hub(hubs, rows, space.id, selector)
    seq_id = request.path_params["id"]
    try:
        package = await svc.store_packages.package(space.id, seq_id)
    except NotFound:
        package = None
    try:
        started = await placement.start_on(hub, seq_id, body, package)
    except placement.HubRefused as exc:
        return JSONResponse(
            exc.body if isinstance(exc.body, dict) else {"error": exc.message},
            status_code=exc.status,
        )
    return JSONResponse(started)


routes = [
    Route("/s3", list_store, methods=["GET"]),
    Route("/s3", put_store, methods=["PUT"]),
    Route("/s3/{id}", put_store, methods=["PUT"]),
    Route("/s3/{id}", delete_stored, methods=["DELETE"]),
    Route("/s3/{bucket}/{file}", download_package, methods=["GET"]),
    Route("/store", clear_store, methods=["DELETE"]),
    Route("/all_sequences", all_sequences, methods=["GET"]),
    Route("/sequence/{id}/start", start_in_space, methods=["POST"]),
]
