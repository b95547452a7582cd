"""Gives every HTTP request an id: the client's `x-request-id` when it is sane, else a new
one. It is in the response's `x-request-id`, in every log line written while the request
runs (manager/logs.py), and the proxy forwards it to the Hub, so one id follows a call from
client to Hub and back. Pure ASGI, the outermost middleware: errors and 403s carry it too.
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from manager import logs
from manager.web.common import HttpMiddleware, editing_headers

HEADER = b"x-request-id"


class RequestIdMiddleware(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        offered = None
        for name, value in scope["headers"]:
            if name == HEADER:
                offered = value
                break
        rid = logs.accept_request_id(offered)
        scope.setdefault("state", {})["request_id"] = rid
        token = logs.request_id.set(rid)
        header = (HEADER, rid.encode())
        send_with_id = editing_headers(send, lambda headers: [*headers, header])
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)
