"""A small Hub API in this process (Starlette on uvicorn) for the connector's transfer tests:
the routes the connector polls, plus echo routes that stream pattern bytes and count uploads."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import free_port

PATTERN = bytes(i % 251 for i in range(251 * 1024))
LOAD = {"avgLoad": 0.1, "currentLoad": 0.2, "memFree": 1 << 30, "memUsed": 1 << 29, "fsSize": []}


def pattern(size: int) -> bytes:
    """Byte i is i % 251 (like the Node Hub peer's echo stream)."""
    whole, part = divmod(size, len(PATTERN))
    return PATTERN * whole + PATTERN[:part]


class FakeHub:
    def __init__(self) -> None:
        self.sequences: list[dict[str, Any]] = []
        self.instances: list[dict[str, Any]] = []
        self.topics: list[dict[str, Any]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(
            routes=[
                Route("/api/v1/version", self._version),
                Route("/api/v1/load-check", self._json(lambda: LOAD)),
                Route("/api/v1/sequences", self._json(lambda: self.sequences)),
                Route("/api/v1/instances", self._json(lambda: self.instances)),
                Route("/api/v1/topics", self._json(lambda: self.topics)),
                Route("/api/v1/echo/bytes/{size:int}", self._bytes),
                Route("/api/v1/echo/count", self._count, methods=["POST"]),
            ]
        )
        # HTTP only: ws="none" keeps uvicorn from importing a WebSocket implementation (before
        # 0.50 its "auto" choice is the legacy one, deprecated by websockets >= 14).
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ws="none"
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> FakeHub:
        self._task = asyncio.ensure_future(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    @staticmethod
    def _json(get: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            return JSONResponse(get())

        return endpoint

    async def _version(self, request: Request) -> Response:
        return JSONResponse({"service": "@scramjet/host", "version": "fake"})

    async def _bytes(self, request: Request) -> Response:
        size = int(request.path_params["size"])

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            while sent < size:
                piece = PATTERN[: min(len(PATTERN), size - sent)]
                sent += len(piece)
                yield piece

        return StreamingResponse(
            body(),
            media_type="application/octet-stream",
            headers={"content-length": str(size)},
        )

    async def _count(self, request: Request) -> Response:
        digest = hashlib.sha256()
        total = 0
        async for chunk in request.stream():
            digest.update(chunk)
            total += len(chunk)
        return JSONResponse({"bytes": total, "sha256": digest.hexdigest()})
