"""`MANAGER_METRICS_PORT`: the metrics on a port of their own, without a token.

In a cluster the scraper sits next to the manager and has no API token; this port serves
only `GET /metrics` (the same text as the admin-only `/api/v1/metrics`) and must not be
exposed outside it. Runs on the server's event loop (the collectors read live asyncio
objects, so no scraping thread), one request per connection, parsed by h11.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import h11

from manager.services.metrics import CONTENT_TYPE

READ_TIMEOUT_S = 10.0


async def start_metrics_server(
    host: str, port: int, render: Callable[[], bytes], *, reuse_port: bool = False
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _answer(reader, writer, render)
        except (h11.ProtocolError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, reuse_port=reuse_port or None)


async def _answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, render: Callable[[], bytes]
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
    event = conn.next_event()
    while event is h11.NEED_DATA:
        conn.receive_data(await asyncio.wait_for(reader.read(16 * 1024), READ_TIMEOUT_S))
        event = conn.next_event()
    if not isinstance(event, h11.Request):
        return
    path = event.target.split(b"?", 1)[0]
    if event.method not in (b"GET", b"HEAD"):
        status, body, ctype = 405, b"Method Not Allowed\n", "text/plain"
    elif path == b"/metrics":
        status, body, ctype = 200, render(), CONTENT_TYPE
    else:
        status, body, ctype = 404, b"Not Found: try /metrics\n", "text/plain"
    headers = [
        ("content-type", ctype),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    if event.method != b"HEAD":
        out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    writer.write(out)
    await writer.drain()
