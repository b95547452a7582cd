"""WebSocket tunnels at the same path Hubs CONNECT to: `/api/v1/<org>/<space>/`.

Authentication is the Hub's own (`Authorization: Digest cnonce=` proof, or
`Authorization: Bearer <access key>`), checked by the same gate as CONNECT tunnels; after
that the socket carries BPMux and everything else is shared. Refusals are close codes a
connector can act on: 4403 (key refused: stop), 4429 (too many failures: retry later),
4409 (id taken: stop), 4413 (Hub limit: stop), 4401 (key revoked: stop), 1013 (this replica
is draining, or too busy admitting other Hubs: try again later), 1012 (closed by a drain:
reconnect).
"""

from __future__ import annotations

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from manager.hubs.endings import Ending
from manager.services.context import Services
from manager.tunnel.connect import ConnectRequest
from manager.tunnel.websocket import close_code_for, run_websocket_tunnel

REFUSALS = {
    403: (4403, "access key refused"),
    429: (4429, "too many attempts or tunnels"),
    503: (1013, "manager draining or busy; try again"),  # 1013: Try Again Later
}
ENDINGS: dict[str, tuple[int, str]] = {  # keyed by Ending, which are strings
    Ending.ID_TAKEN: (4409, "id already connected"),
    Ending.HUB_LIMIT: (4413, "Hub limit reached"),
    Ending.KEY_REVOKED: (4401, "access key revoked"),
    Ending.DRAINING: (1012, "manager draining; reconnect"),  # 1012: Service Restart
    Ending.BUSY: (1013, "manager busy; try again"),
}


def close_code(reason: str) -> tuple[int, str]:
    if reason in ENDINGS:
        return ENDINGS[reason]
    return close_code_for(reason)


async def hub_websocket(ws: WebSocket) -> None:
    svc: Services = ws.app.state.services
    peer = ws.client.host if ws.client else "?"
    headers = {k.lower(): v for k, v in ws.headers.items()}
    admission = await svc.gate.admit(ConnectRequest(ws.url.path, headers, peer, websocket=True))
    try:
        await ws.accept()
        if admission.run is None:
            code, reason = REFUSALS.get(admission.status, (4400, "refused"))
            await ws.close(code=code, reason=reason)
            return
        await run_websocket_tunnel(ws, admission.run, name=admission.name, close_code=close_code)
    finally:
        if admission.abandon is not None:
            admission.abandon()  # also when the socket died before `run` started


routes = [
    WebSocketRoute("/api/v1/{org}/{space}/", hub_websocket),
    WebSocketRoute("/api/v1/{org}/{space}", hub_websocket),
]
