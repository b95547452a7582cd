"""Runs uvicorn with the manager's app; the one place that wires settings to a listener."""

from __future__ import annotations

import uvicorn

from manager.config import Settings
from manager.services.context import Services
from manager.tunnel.connect import make_http_protocol
from manager.web.app import create_app


def build_config(svc: Services, *, own_services: bool = True) -> uvicorn.Config:
    """API, WebSocket and CONNECT tunnels on one listener (TLS options apply to all)."""
    settings = svc.settings
    app = create_app(svc, own_services=own_services)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=30,
        http=make_http_protocol(svc.gate),
        lifespan="on",
    )


async def run_server(settings: Settings) -> None:
    server = uvicorn.Server(build_config(Services.build(settings)))
    await server.serve()
