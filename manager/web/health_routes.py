"""`/healthz` and `/readyz`: what load balancers and Kubernetes probe, without a token.

`/healthz` says the process serves HTTP and touches nothing else (a database outage must not
get a live replica restarted). `/readyz` runs the readiness checks (manager/services/
readiness.py) and names the failing ones, by name only: no error text, host or version, as
anyone who can reach the port may ask.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from manager.web.common import services

_ALIVE = b'{"alive":true}'


async def healthz(_request: Request) -> Response:
    return Response(_ALIVE, media_type="application/json")


async def readyz(request: Request) -> Response:
    failing = await services(request).readiness.failing()
    if failing:
        return JSONResponse(
            {"ready": False, "failing": failing},
            status_code=503,
            headers={"cache-control": "no-store"},
        )
    return JSONResponse({"ready": True}, headers={"cache-control": "no-store"})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
