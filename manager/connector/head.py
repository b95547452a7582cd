"""The first bytes of a channel the manager opened: which HTTP request is this?

A channel is routed by its request head: `POST /api/v1/platform` is the control channel the
connector answers itself; anything else goes to the local Hub over TCP. h11 parses the head
(we never hand-parse HTTP) and keeps the bytes after it (`trailing_data`), so the body goes
on untouched. The forwarded head is re-serialised by h11 with `Connection: close`, the one
change we make: the Hub's Node server closes idle keep-alive sockets after 5 s, while the
manager keeps idle channels for reuse much longer, so a kept-alive channel would outlive
its TCP connection and the next proxied call on it would fail; with one exchange per
channel there is nothing to go stale. Sans-I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import h11

from manager.connector.errors import BadRequestHead

__all__ = ["CONTROL_PATH", "MAX_HEAD", "HeadSniffer", "RequestHead", "simple_response"]

MAX_HEAD = 64 * 1024
CONTROL_PATH = b"/api/v1/platform"


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]  # names as sent (not lower-cased)
    raw_head: bytes  # the head exactly as it arrived
    rest: bytes  # whatever followed the head in the bytes seen so far (body, next request)

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]

    @property
    def is_control(self) -> bool:
        return self.method == b"POST" and self.path.rstrip(b"/") == CONTROL_PATH

    def header(self, name: bytes) -> bytes | None:
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def for_hub(self) -> bytes:
        """The head to write to the Hub: the same request, one exchange per connection.

        Upgrade requests keep their own `Connection` header (nothing in the Hub API upgrades,
        but a close there would be wrong)."""
        if self.header(b"upgrade") is not None:
            return self.raw_head
        headers = [(k, v) for k, v in self.headers if k.lower() != b"connection"]
        headers.append((b"Connection", b"close"))
        client = h11.Connection(h11.CLIENT)
        request = h11.Request(method=self.method, target=self.target, headers=headers)
        return client.send(request) or b""


class HeadSniffer:
    """Feed channel bytes until a complete request head appears (`feed` returns it)."""

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self.seen = 0  # bytes fed so far: what the channel must report consumed
        self._raw = bytearray()

    def feed(self, data: bytes) -> RequestHead | None:
        """The head once complete, else None. Raises BadRequestHead for non-HTTP bytes, a head
        over the size limit, or a channel that ends (`data == b""`) before its head."""
        self.seen += len(data)
        self._raw += data
        self.conn.receive_data(data)
        try:
            event = self.conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise BadRequestHead(str(exc)) from None
        if event is h11.NEED_DATA:
            return None
        if not isinstance(event, h11.Request):
            raise BadRequestHead("the channel ended before a request head")
        rest = self.conn.trailing_data[0]
        raw = bytes(self._raw)
        self._raw.clear()
        return RequestHead(
            method=bytes(event.method),
            target=bytes(event.target),
            headers=[(bytes(k), bytes(v)) for k, v in event.headers.raw_items()],
            raw_head=raw[: len(raw) - len(rest)],
            rest=rest,
        )


def simple_response(conn: h11.Connection, status: int, error: str) -> bytes:
    """A complete JSON error response (`{"error": ...}`), closing the exchange, from the
    connection that parsed the request (so h11 checks the framing); b"" if it cannot."""
    body = json.dumps({"error": error}).encode()
    head = h11.Response(
        status_code=status,
        headers=[
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ],
    )
    try:
        return b"".join(
            conn.send(ev) or b"" for ev in (head, h11.Data(data=body), h11.EndOfMessage())
        )
    except h11.LocalProtocolError:
        return b""
