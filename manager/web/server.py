"""Runs uvicorn with the manager's app; the one place that wires settings to listeners."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import importlib
import logging
import os
from collections.abc import Callable

import uvicorn

from manager.config import Settings
from manager.services.context import Services
from manager.tunnel.connect import TunnelProtocol, make_http_protocol
from manager.web.app import create_app

log = logging.getLogger("manager")


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
        ws="websockets-sansio",
        ws_max_size=4 * 1024 * 1024,
        ws_ping_interval=5.0,  # with the timeout: a dead peer is noticed within 15 s
        ws_ping_timeout=10.0,
        ws_per_message_deflate=False,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
    )


def limit_malloc_arenas(arenas: int = 2, mmap_threshold: int = 1 << 20) -> None:
    """glibc gives every thread that allocates (aiosqlite's, `to_thread`'s) its own heap
    arena and keeps them; measured with 1,000 idle Hubs that made RSS per Hub jump between
    38 and 132 KiB from run to run. Two arenas keep it at 38. Each key-proof check (scrypt)
    allocates 16 MiB, and glibc's self-raising mmap threshold then keeps such blocks in the
    heap: 200 checks left RSS 49 MiB higher for good; a fixed 1 MiB threshold returns them
    (54 -> 55 MiB). Must run before threads start; a no-op where mallopt is missing; the
    MALLOC_ARENA_MAX / MALLOC_MMAP_THRESHOLD_ environment variables win."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not os.environ.get("MALLOC_ARENA_MAX"):
            libc.mallopt(-8, arenas)  # M_ARENA_MAX
        if not os.environ.get("MALLOC_MMAP_THRESHOLD_"):
            libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when asked or (with `auto`) when installed (an optional extra: on our
    benchmarks it made no measurable difference). None means asyncio's own loop."""
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise SystemExit("MANAGER_LOOP=uvloop, but uvloop is not installed") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def run_server(settings: Settings) -> None:
    svc = Services.build(settings)
    config = build_config(svc)
    tunnel_server: asyncio.Server | None = None
    if settings.tunnel_port:
        config.load()
        tunnel_server = await asyncio.get_running_loop().create_server(
            lambda: TunnelProtocol(svc.gate),
            settings.host,
            settings.tunnel_port,
            ssl=config.ssl,
        )
        log.info("Hub tunnels also on %s:%d", settings.host, settings.tunnel_port)
    try:
        await uvicorn.Server(config).serve()
    finally:
        if tunnel_server is not None:
            tunnel_server.close()
