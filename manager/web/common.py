"""Helpers the endpoints share: the services, the caller, their Space, and JSON bodies."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from manager.db.models import Space
from manager.principal import Principal
from manager.services.context import Services
from manager.services.errors import Invalid, TooLarge
from manager.services.spaces import space_for

MAX_JSON_BODY = 64 * 1024


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
