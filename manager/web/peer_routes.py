"""What only the replica holding a Hub knows, for the other replicas (behind PeerMiddleware).

`GET /_peer/v1/spaces/<S>/topics/<t>`: the topic as this replica's own producers write it.
`GET /_peer/v1/spaces/<S>/hubs`: the live state of the Space's Hubs held here, so any replica
can answer the Space's lists (tagged and without LOAD with `load=0`: manager.services.held_hubs).
`GET /_peer/v1/spaces/<S>/hubs/<H>`: whether this replica holds the Hub and its tunnel is
alive, which decides a duplicate admission elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from manager.hubs.peers import PEER_PREFIX
from manager.hubs.registry import tunnel_alive
from manager.services.topics import check_name, check_type, drain
from manager.web.common import services


async def space_hubs(request: Request) -> Response:
    """The Space's Hubs held here; 304 to an asker whose ETag is current (HeldHubs)."""
    svc = services(request)
    tag, body = svc.held_hubs.render(
        request.path_params["space"],
        svc.settings.replica,
        request.headers.get("if-none-match"),
        # Only an asker that says load=0 gets the tagged answer: a replica of an older
        # release (during a rolling upgrade) asks with neither and still gets the figures.
        load=request.query_params.get("load") != "0",
    )
    headers = {"etag": tag} if tag else None
    if body is None:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def hub_status(request: Request) -> Response:
    svc = services(request)
    hub = svc.registry.get(request.path_params["space"], request.path_params["hub"])
    if hub is None:
        return JSONResponse({"held": False, "alive": False})
    return JSONResponse({"held": True, "epoch": hub.epoch, "alive": tunnel_alive(hub)})


async def topic_stream(request: Request) -> Response:
    """This board's topic as this replica's own producers write it, for a replica whose
    Hubs require it (manager.services.topic_router relays it there)."""
    svc = services(request)
    name = check_name(request.path_params["name"])
    ctype = check_type(request.headers.get("content-type"), "application/x-ndjson")
    topic = svc.topics.open(request.path_params["space"], name, ctype, None)
    consumer = topic.subscribe(local_only=True)
    svc.router.kick()  # pull from the providers held here, if nobody did yet

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in drain(consumer):
                yield chunk
        finally:
            topic.unsubscribe(consumer)

    return StreamingResponse(body(), media_type=ctype)


routes = [
    Route(PEER_PREFIX + "/v1/spaces/{space}/topics/{name}", topic_stream, methods=["GET"]),
    Route(PEER_PREFIX + "/v1/spaces/{space}/hubs", space_hubs, methods=["GET"]),
    Route(PEER_PREFIX + "/v1/spaces/{space}/hubs/{hub}", hub_status, methods=["GET"]),
]
