"""Requests a Hub opens itself: served by the Space API as that Hub's Space (spec §4.2).

The Hub asks for `/api/v1/cpm/<space>/api/v1/<rest>`; `CpmRewrite` maps it onto our Space
API. Kept apart from the gate, which only decides whether a tunnel runs at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from manager.common import org_id_of
from manager.principal import Principal
from manager.tunnel.channel import Channel
from manager.tunnel.http import serve_http
from manager.tunnel.session import ChannelHandler

_CPM_PATH = re.compile(r"^/api/v1/cpm/([^/]+)/api/v1(/.*)?$")


def hub_request_handler(app: Callable[[], ASGIApp | None], space_id: str) -> ChannelHandler:
    """Serves each channel the Hub opens with the app `app()` returns at that moment (the
    web layer sets it after the gate is built; none yet: the channel is aborted)."""
    principal = Principal(org_id=org_id_of(space_id), hub_space_id=space_id)

    async def handle(channel: Channel) -> None:
        current = app()
        if current is None:
            channel.abort()
            return
        await serve_http(channel, CpmRewrite(current, space_id), {"principal": principal})

    return handle


class CpmRewrite:
    """Maps the Hub's `/api/v1/cpm/<space>/api/v1/<rest>` onto our Space API (spec §4.2)."""

    def __init__(self, app: ASGIApp, space_id: str) -> None:
        self.app = app
        self.space_id = space_id

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        match = _CPM_PATH.match(scope["path"])
        if match is not None:
            rest = match.group(2) or "/"
            path = f"/api/v1/space/{match.group(1)}/api/v1{rest}"
            scope = dict(scope, path=path, raw_path=path.encode())
        await self.app(scope, receive, send)
