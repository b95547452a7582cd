"""The little HTTP/1.1 the fast lane speaks (RFC 9112), sans I/O: a request head in, a
response head out (body chunks are framed by manager.hubs.http1).

This is not a general parser and must not become one. It answers one question, "is this a
plain proxied GET with no body?", and returns the request only when the answer is clearly
yes; everything else (other methods, bodies, upgrades, HTTP/1.0, odd bytes, obs-fold,
pipelined requests) is left to uvicorn's h11, which serves or refuses it in full. Being
strict costs nothing here: a request it declines is still served, only slower.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from manager.hubs.peers import FORWARDED_PREFIX

Headers = list[tuple[bytes, bytes]]

MAX_HEAD = 16 * 1024  # a longer head is not the lane's (h11 allows more, and says so)
# The shapes a lane request can start with: anything else goes to uvicorn at its first bytes.
STARTS = (b"GET /api/v1/space/", b"GET " + FORWARDED_PREFIX.encode())  # a caller's; a replica's
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
# Headers that make a request more than a bodiless GET: h11 handles those.
_DECLINED = frozenset({b"transfer-encoding", b"upgrade", b"expect", b"te"})
_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}


@dataclass(slots=True)
class RequestHead:
    target: bytes
    headers: Headers  # names lower-cased, values stripped, in order
    keep_alive: bool


def may_be_lane_request(start: bytes) -> bool:
    """Whether the first bytes of a request could still turn out to be a lane request.
    Lines ending in a bare LF rule it out: h11 accepts them (RFC 9112 §2.2), but the lane
    waits for CRLF CRLF and would hold such a head back for ever."""
    if not any(s.startswith(start[: len(s)]) for s in STARTS):
        return False
    return start.count(b"\n") == start.count(b"\r\n")


def head_end(buffer: bytes) -> int:
    """Where the head's blank line ends (the first body byte), or -1 while incomplete."""
    at = buffer.find(b"\r\n\r\n")
    return -1 if at < 0 else at + 4


def parse_request_head(head: bytes) -> RequestHead | None:
    """The request, if `head` (through its blank line) is a GET the lane can serve."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or parts[2] != b"HTTP/1.1":
        return None
    target = parts[1]
    if _TARGET.fullmatch(target) is None:
        return None
    headers: Headers = []
    hosts = 0
    keep_alive = True
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            return None  # also a continuation line (obs-fold), which starts with space
        value = value.strip(b" \t")
        if _VALUE.fullmatch(value) is None:
            return None
        name = name.lower()
        if name in _DECLINED:
            return None
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if value != b"0":
                return None
        elif name == b"connection":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if b"upgrade" in tokens:
                return None
            if b"close" in tokens:
                keep_alive = False
        headers.append((name, value))
    if hosts != 1:
        return None  # HTTP/1.1 requires exactly one; h11 refuses the rest with a 400
    return RequestHead(target=target, headers=headers, keep_alive=keep_alive)


def response_head(status: int, headers: Headers) -> bytes:
    """The status line and headers. Values come from h11 (the Hub's, validated on the way
    in) or from the manager itself, so nothing here needs escaping."""
    out = [b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b""))]
    for name, value in headers:
        out += (name, b": ", value, b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def has_body(status: int) -> bool:
    return status >= 200 and status not in (204, 304)
