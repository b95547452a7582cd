"""WebSocket tunnels at the same path Hubs CONNECT to: `/api/v1/<org>/<space>/`.

Authentication is the Hub's own (`Authorization: Digest cnonce=` proof, or
`Authorization: Bearer <access key>`), checked by the same gate as CONNECT tunnels; after
that the socket carries BPMux and everything else is shared. Refusals are close codes a
connector can act on: 4403 (key refused: stop), 4429 (too many failures: retry later),
4409 (id taken: stop), 4413 (Hub limit: stop), 4401 (key revoked: stop).
"""

from __future__ import annotations

import dataclasses

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from manager.services.context import Services
from manager.tunnel.session import TunnelSession
from manager.tunnel.websocket import run_websocket_tunnel

REFUSALS = {403: (4403, "access key refused"), 429: (4429, "too many attempts or tunnels")}
ENDINGS = {
    "id already connected": (4409, "id already connected"),
    "id taken": (4409, "id already connected"),
    "hub limit reached": (4413, "Hub limit reached"),
    "access key revoked": (4401, "access key revoked"),
}


def close_code(reason: str) -> tuple[int, str]:
    if reason in ENDINGS:
        return ENDINGS[reason]
    if reason.startswith("protocol error"):
        return 1002, reason
    return 1000, reason or "tunnel closed"


async def hub_websocket(ws: WebSocket) -> None:
    svc: Services = ws.app.state.services
    peer = ws.client.host if ws.client else "?"
    headers = {k.lower(): v for k, v in ws.headers.items()}
    hello = await svc.gate.check(ws.url.path, headers, peer)
    try:
        await ws.accept()
    except BaseException:
        if not isinstance(hello, int):
            hello.slot.release()
        raise
    if isinstance(hello, int):
        code, reason = REFUSALS.get(hello, (4400, "refused"))
        await ws.close(code=code, reason=reason)
        return

    joined = dataclasses.replace(hello, via_connector=True)

    async def run(session: TunnelSession) -> None:
        await svc.gate.run_hub(session, joined)

    name = f"ws hub {hello.requested_id or '?'}@{hello.space_id} from {peer}"
    try:
        await run_websocket_tunnel(ws, run, name=name, close_code=close_code)
    finally:
        hello.slot.release()  # also when the socket died before `run` started


routes = [
    WebSocketRoute("/api/v1/{org}/{space}/", hub_websocket),
    WebSocketRoute("/api/v1/{org}/{space}", hub_websocket),
]
