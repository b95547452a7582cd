"""The client side of HTTP/1.1 (RFC 9112), sans I/O: request bytes out, response events in.

`HubClient` used h11 for this. Under `wrk`, h11's event machinery (a state machine per
event, header validation by regex on both sides, a bytearray buffer that copies every body
byte in and out) was the largest cost of a proxied request left after the fast lane (~10 %
of the manager's samples). This codec does only what a client of one Hub needs: one request
at a time on a connection, bodies framed by Content-Length, chunked, or the connection's
end. It is strict where h11 is strict about what comes back (the Hub is not trusted: status
line, header names and values, framing headers, chunk sizes, size limits) and raises
`ProtocolError` for anything it does not accept; it does not bother to validate what the
manager itself sends beyond refusing bytes that would split a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

Headers = list[tuple[bytes, bytes]]

MAX_HEAD = 64 * 1024  # a response head (or trailer section) larger than this is refused
MAX_CHUNK_LINE = 1024
MAX_LENGTH_DIGITS = 20  # as h11: longer is no real length (and int() refuses > 4,300 digits)

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [\t\x20-\x7e\x80-\xff]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\t\x20-\x7e\x80-\xff]*)?")


LAST_CHUNK = b"0\r\n\r\n"


def frame_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (not empty: an empty chunk is the last one)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class ProtocolError(Exception):
    """What the other side sent is not HTTP/1.1 this client accepts."""


class LocalError(Exception):
    """What the caller asked to send is not sendable (a bad header, a body over its length)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers  # names lower-cased, values stripped, in order

    @property
    def informational(self) -> bool:
        return self.status < 200


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Marker("NEED_DATA")
END: Final = _Marker("END")  # the response body is complete
CLOSED: Final = _Marker("CLOSED")  # the connection ended before the response did

Event = Response | bytes | _Marker

# Body states
_HEAD, _LENGTH, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class ClientConnection:
    """One connection's HTTP/1.1 state: the request going out, the response coming in."""

    def __init__(self) -> None:
        self._method = b"GET"
        self._to_send: int | None = None  # request body bytes still owed; None: chunked
        self.request_done = False
        self._buffer = b""
        self._eof = False
        self._state = _HEAD
        self._remaining = 0
        self.keep_alive = True  # after this exchange, may the connection carry another?

    # the request

    def request(self, method: bytes, target: bytes, headers: Headers) -> bytes:
        """The head. The body framing comes from `headers` (Content-Length, or chunked with
        Transfer-Encoding); with neither, there is no body."""
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        self._method = method
        self._to_send = 0
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
            lower = name.lower()
            if lower == b"content-length":
                if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
                    raise LocalError(f"bad Content-Length {value[:40]!r}")
                self._to_send = int(value)
            elif lower == b"transfer-encoding":
                self._to_send = None
            elif lower == b"connection" and b"close" in value.lower():
                self.keep_alive = False
        parts.append(b"\r\n")
        head = b"".join(parts)
        # The only CR and LF are the separators added here (cheaper than a search per part).
        lines = len(headers) + 2
        if head.count(b"\r") != lines or head.count(b"\n") != lines or b"\x00" in head:
            raise LocalError("a request line or header holds CR, LF or NUL")
        if self._to_send == 0:
            self.request_done = True
        return head

    def data(self, chunk: bytes) -> bytes:
        if not chunk and not self._to_send:
            return b""  # an empty piece is nothing to send, even with no body owed
        if self.request_done:
            raise LocalError("the request body is already complete")
        if self._to_send is None:
            return frame_chunk(chunk) if chunk else b""
        if len(chunk) > self._to_send:
            raise LocalError("more request body than its Content-Length")
        self._to_send -= len(chunk)
        return chunk

    def end(self) -> bytes:
        if self.request_done:
            return b""
        if self._to_send:
            raise LocalError("the request body ended short of its Content-Length")
        self.request_done = True
        return LAST_CHUNK if self._to_send is None else b""

    # the response

    def receive(self, data: bytes) -> None:
        """Bytes from the other side; b"" is its end."""
        if data:
            self._buffer = self._buffer + data if self._buffer else data
        else:
            self._eof = True

    def next_event(self) -> Event:
        state = self._state
        if state == _LENGTH:
            return self._length_body()
        if state == _HEAD:
            return self._head()
        if state == _DONE:
            return END
        if state == _UNTIL_CLOSE:
            if self._buffer:
                data, self._buffer = self._buffer, b""
                return data
            if self._eof:
                self._state = _DONE
                return END
            return NEED_DATA
        return self._chunked()

    @property
    def reusable(self) -> bool:
        """Both messages complete and nothing said the connection ends: it may carry the
        next request (from a fresh `ClientConnection`)."""
        return (
            self.keep_alive
            and self.request_done
            and self._state == _DONE
            and not self._buffer
            and not self._eof
        )

    # internals

    def _head(self) -> Event:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                raise ProtocolError(f"response head larger than {MAX_HEAD} bytes")
            if self._eof:
                if self._buffer:
                    raise ProtocolError("connection ended inside the response head")
                return CLOSED
            return NEED_DATA
        if end > MAX_HEAD:
            raise ProtocolError(f"response head larger than {MAX_HEAD} bytes")
        head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
        lines = head.split(b"\r\n")
        status_line = _STATUS.fullmatch(lines[0])
        if status_line is None:
            raise ProtocolError(f"bad status line {lines[0][:100]!r}")
        status = int(status_line.group(2))
        headers = _header_lines(lines[1:])
        if status < 200:
            if status == 101:
                raise ProtocolError("a protocol switch was not asked for")
            return Response(status, headers)  # and the real one follows
        self._framing(status, headers, http10=status_line.group(1) == b"0")
        return Response(status, headers)

    def _framing(self, status: int, headers: Headers, *, http10: bool) -> None:
        length: bytes | None = None
        chunked = False
        for name, value in headers:
            if name == b"content-length":
                for item in value.split(b","):
                    item = item.strip()
                    bad = not item.isdigit() or len(item) > MAX_LENGTH_DIGITS
                    if bad or (length is not None and item != length):
                        raise ProtocolError(f"bad Content-Length {value[:40]!r}")
                    length = item
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked" or chunked:
                    raise ProtocolError(f"unsupported Transfer-Encoding {value[:40]!r}")
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                self.keep_alive = False
        if http10:
            self.keep_alive = False
        if self._method == b"HEAD" or status in (204, 304):
            self._state = _DONE
        elif chunked:
            if length is not None:
                raise ProtocolError("both Content-Length and Transfer-Encoding")
            self._state = _CHUNK_LINE
        elif length is not None:
            self._remaining = int(length)
            self._state = _LENGTH if self._remaining else _DONE
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE

    def _length_body(self) -> Event:
        buffer = self._buffer
        if not buffer:
            if self._eof:
                return CLOSED
            return NEED_DATA
        remaining = self._remaining
        if len(buffer) <= remaining:
            data, self._buffer = buffer, b""
        else:
            data, self._buffer = buffer[:remaining], buffer[remaining:]
        remaining -= len(data)
        self._remaining = remaining
        if not remaining:
            self._state = _DONE
            if self._buffer:  # one request at a time: nothing may follow the answer
                raise ProtocolError("more than its Content-Length")
        return data

    def _chunked(self) -> Event:
        while True:
            state, buffer = self._state, self._buffer
            if state == _CHUNK_DATA:
                if not buffer:
                    return CLOSED if self._eof else NEED_DATA
                take = min(self._remaining, len(buffer))
                data = buffer if take == len(buffer) else buffer[:take]
                self._buffer = buffer[take:] if take < len(buffer) else b""
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CRLF
                return data
            if state == _CHUNK_CRLF:
                if len(buffer) < 2:
                    if self._eof:
                        return CLOSED
                    return NEED_DATA
                if buffer[:2] != b"\r\n":
                    raise ProtocolError("a chunk's data does not end with CRLF")
                self._buffer = buffer[2:]
                self._state = _CHUNK_LINE
                continue
            if state == _CHUNK_LINE:
                end = buffer.find(b"\r\n", 0, MAX_CHUNK_LINE + 2)
                if end < 0:
                    if len(buffer) > MAX_CHUNK_LINE + 1:  # + its CR, waiting for the LF
                        raise ProtocolError("chunk size line too long")
                    return CLOSED if self._eof else NEED_DATA
                size = _CHUNK_SIZE.fullmatch(buffer, 0, end)
                if size is None:
                    raise ProtocolError(f"bad chunk size line {buffer[: min(end, 40)]!r}")
                self._buffer = buffer[end + 2 :]
                self._remaining = int(size.group(1), 16)
                self._state = _CHUNK_DATA if self._remaining else _TRAILERS
                continue
            # _TRAILERS: header lines (ignored, but validated) up to a blank line
            if buffer.startswith(b"\r\n"):
                self._buffer = buffer[2:]
                return self._done()
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    raise ProtocolError(f"trailers larger than {MAX_HEAD} bytes")
                return CLOSED if self._eof else NEED_DATA
            if end > MAX_HEAD:
                raise ProtocolError(f"trailers larger than {MAX_HEAD} bytes")
            _header_lines(buffer[:end].split(b"\r\n"))
            self._buffer = buffer[end + 4 :]
            return self._done()

    def _done(self) -> Event:
        self._state = _DONE
        if self._buffer:
            raise ProtocolError("bytes after the end of the chunked body")
        return END


def _header_lines(lines: list[bytes]) -> Headers:
    headers: Headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise ProtocolError(f"bad header line {line[:100]!r}")
        value = value.strip(b" \t")
        if _VALUE.fullmatch(value) is None:
            raise ProtocolError(f"bad value in header {name[:40]!r}")
        headers.append((name.lower(), value))
    return headers
