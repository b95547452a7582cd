"""Runs uvicorn with the manager's app; the one place that wires settings to a listener."""

from __future__ import annotations

import uvicorn

from manager.config import Settings
from manager.services.context import Services
from manager.web.app import create_app


def build_config(settings: Settings, **extra: object) -> uvicorn.Config:
    svc = Services.build(settings)
    app = create_app(svc, own_services=True)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=30,
        **extra,  # type: ignore[arg-type]
    )


async def run_server(settings: Settings) -> None:
    server = uvicorn.Server(build_config(settings))
    await server.serve()
