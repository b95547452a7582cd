"""Runs uvicorn with the manager's app; the one place that wires settings to listeners.

SIGTERM drains before uvicorn's own shutdown (`DrainingServer`; manager/services/drain.py
says why): not ready at once, idle keep-alive connections closed as they go idle, tunnels
closed over the drain window, then uvicorn stops listening and exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

from manager.config import Settings
from manager.services.context import Services
from manager.services.drain import Drain
from manager.tunnel.connect import TunnelProtocol
from manager.web.app import create_app
from manager.web.fast_lane import LaneRoutes
from manager.web.http_protocol import ApiProtocol, make_http_protocol
from manager.web.metrics_port import start_metrics_server
from manager.web.proxy import HubProxy
from manager.web.workers import WORKER_ENV

log = logging.getLogger("manager")

IDLE_SWEEP_S = 0.5  # while draining, keep-alive connections are closed once idle this often
AFTER_DRAIN_S = 3  # what uvicorn then gives requests still running (none go to Hubs)


def build_config(svc: Services, *, own_services: bool = True) -> uvicorn.Config:
    """API, WebSocket and CONNECT tunnels on one listener (TLS options apply to all)."""
    settings = svc.settings
    app = create_app(svc, own_services=own_services)
    lane = None
    if settings.fast_lane:
        lane = LaneRoutes(
            app=app,
            proxy=HubProxy(),
            tokens=svc.tokens,
            quotas=svc.quotas,
            limiter=app.state.rate_limiter,
            metrics=svc.metrics.proxy,
            peer_secret=svc.peer_secret,
        )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # manager.logs configures logging, uvicorn's loggers included
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=30,
        http=make_http_protocol(svc.gate, lane),
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


def tune_gc(young: int = 20_000) -> None:
    """Fewer, cheaper full garbage collections. A full collection walks every tracked
    object, and with thousands of Hubs connected that is 0.3-0.6 s of a stalled event loop
    at 3,000 Hubs (measured with gc.callbacks), 14 times in 80 s: the /list p99 and the
    late LOAD lines at 10,000. What is alive when serving starts (modules, the app) is
    never garbage, so it is frozen out of every later walk; and a larger young generation
    lets a request's or a LOAD line's objects die young instead of being promoted and
    counted towards the next full collection. Cyclic garbage is still collected."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old)


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


class DrainingServer(uvicorn.Server):
    """uvicorn's server, with a drain between SIGTERM and its shutdown. Other signals (and a
    second SIGTERM) stop it as uvicorn does."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain
        self.drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self.drain_requested and not self.should_exit:
            # Only flags here, in a signal handler; on_tick starts the work in the loop.
            self.drain_requested = True
            self.drain.start()
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain_requested and self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())
        return await super().on_tick(counter)

    async def _drain(self) -> None:
        sweeper = asyncio.get_running_loop().create_task(self._close_idle_connections())
        try:
            await self.drain.run()
        except Exception as exc:
            log.error("drain failed: %r; stopping now", exc)
        finally:
            sweeper.cancel()
            self.config.timeout_graceful_shutdown = AFTER_DRAIN_S
            self.should_exit = True

    async def _close_idle_connections(self) -> None:
        """HTTP connections between requests are closed, and ones mid-request close after
        their response (uvicorn's own `shutdown` of a connection does exactly that), so
        clients move to ready replicas. A connection that has not sent its first request yet
        is left alone: it is served (a health probe, say)."""
        while True:
            for conn in list(self.server_state.connections):
                if isinstance(conn, ApiProtocol) and conn.served:
                    conn.shutdown()
            await asyncio.sleep(IDLE_SWEEP_S)


async def run_server(settings: Settings) -> None:
    sockets = None
    worker = bool(os.environ.get(WORKER_ENV))
    if worker:
        # One of `serve --workers N`: the port shared with the others, the peer route on a
        # loopback port of its own (manager.web.workers).
        peer = _bound("127.0.0.1", 0)
        settings = settings.with_overrides(peer_url=f"http://127.0.0.1:{peer.getsockname()[1]}")
        sockets = [_bound(settings.host, settings.port, reuse_port=True), peer]
    elif settings.peer_port:
        # Other replicas forward to this port (MANAGER_PEER_URL); it is served by the same
        # app, so one server drains both.
        sockets = [_bound(settings.host, settings.port), _bound(settings.host, settings.peer_port)]
        log.info("peer route for other replicas on %s:%d", settings.host, settings.peer_port)
    svc = Services.build(settings)
    config = build_config(svc)
    tune_gc()  # last: what was built so far is frozen
    tunnel_server: asyncio.Server | None = None
    metrics_server: asyncio.Server | None = None
    if settings.tunnel_port:
        config.load()
        tunnel_server = await asyncio.get_running_loop().create_server(
            lambda: TunnelProtocol(svc.gate),
            settings.host,
            settings.tunnel_port,
            ssl=config.ssl,
            reuse_port=worker or None,  # shared by `serve --workers N`
        )
        log.info("Hub tunnels also on %s:%d", settings.host, settings.tunnel_port)
    if settings.metrics_port:
        metrics_server = await start_metrics_server(
            settings.host, settings.metrics_port, svc.metrics.render, reuse_port=worker
        )
        log.info("metrics without a token on %s:%d/metrics", settings.host, settings.metrics_port)
    try:
        await DrainingServer(config, svc.drain).serve(sockets=sockets)
    finally:
        for server in (tunnel_server, metrics_server):
            if server is not None:
                server.close()


def _bound(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP.
    # Without it Nagle held small writes back: 24 ms p50 per proxied GET instead of 0.9.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
