"""Helpers the endpoints share: the services, the caller, their Space, and JSON bodies."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from manager.db.models import Space
from manager.principal import Principal
from manager.services.context import Services
from manager.services.errors import Invalid, TooLarge
from manager.services.spaces import space_for

MAX_JSON_BODY = 64 * 1024


RawHeaders = list[tuple[bytes, bytes]]


class HttpMiddleware:
    """Pure ASGI middleware that acts on HTTP requests (`http`); the rest passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


def editing_headers(send: Send, edit: Callable[[RawHeaders], RawHeaders]) -> Send:
    """`send`, with the response's headers passed through `edit` on their way out (for
    pure ASGI middleware that adds headers to every answer, streamed ones included)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": edit(list(message.get("headers", ())))}
        await send(message)

    return sending


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(request: Request) -> Principal:
    who: Principal = request.state.principal
    return who


async def caller_space(request: Request) -> Space:
    svc = services(request)
    async with svc.sessions() as s:
        return await space_for(s, principal(request), request.path_params["space"])


async def json_body(request: Request, *, default: Any = None) -> Any:
    """The JSON body, read with a size cap; `null` and an empty body give `default`."""
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_JSON_BODY:
            raise TooLarge(f"JSON body larger than {MAX_JSON_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks).strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep [[[[...
        raise Invalid(f"Malformed JSON body: {exc}") from None
    return default if value is None else value
