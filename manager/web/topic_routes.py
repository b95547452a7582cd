"""Space-level topics (space-api.md S12, S13): API clients produce into and consume from the
Space-wide topic that the router also connects to every Hub providing or requiring it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from manager.services.topics import API, check_name, check_type, drain
from manager.web.common import caller_space, services


def _known_type(request: Request, space_id: str, name: str) -> str | None:
    for hub in services(request).registry.in_space(space_id):
        info = hub.state.topics.get(name)
        if info is not None:
            return info.content_type
    return None


async def produce(request: Request) -> Response:
    space = await caller_space(request)
    name = check_name(request.path_params["name"])
    ctype = check_type(request.headers.get("content-type"), "application/octet-stream")
    svc = services(request)
    topic = svc.topics.open(space.id, name, ctype, _known_type(request, space.id, name))
    svc.router.kick()
    await topic.feed(request.stream(), API)
    if request.headers.get("x-end-stream", "").strip().lower() == "true":
        await topic.end_api_readers()
        return JSONResponse({}, status_code=200)
    return JSONResponse({}, status_code=202)


async def consume(request: Request) -> Response:
    space = await caller_space(request)
    name = check_name(request.path_params["name"])
    ctype = check_type(request.headers.get("content-type"), "application/x-ndjson")
    svc = services(request)
    topic = svc.topics.open(space.id, name, ctype, _known_type(request, space.id, name))
    consumer = topic.subscribe()
    svc.router.kick()

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in drain(consumer):
                yield chunk
        finally:
            topic.unsubscribe(consumer)

    return StreamingResponse(body(), media_type="application/octet-stream")


routes = [
    Route("/topic/{name}", produce, methods=["POST"]),
    Route("/topic/{name}", consume, methods=["GET"]),
]
