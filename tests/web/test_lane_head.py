"""The fast lane's little HTTP/1.1 (manager/web/lane_head.py) and its path split
(manager/web/fast_lane.py::split_target), sans I/O.

The lane may only take a request when it is clearly a plain bodiless HTTP/1.1 GET under
`/api/v1/space/`: anything it takes by mistake skips h11's checks and the middleware, while
anything it declines is still served by uvicorn. So the tests below mostly pin what it
declines; and the split must agree with the routes and the rate limiter, or the lane would
proxy (or fail to meter) requests the full stack treats differently.
"""

from __future__ import annotations

import re

import pytest

from manager.hubs.http1 import LAST_CHUNK, frame_chunk
from manager.web import lane_head
from manager.web.fast_lane import split_target
from manager.web.proxy import _PREFIX as PROXY_PREFIX
from manager.web.rate_limit import PROXIED

TARGET = b"/api/v1/space/org-1-space-1/api/v1/sth/hub-1/api/v1/version"


def head(*header_lines: bytes, request_line: bytes | None = None) -> bytes:
    """A request head through its blank line, as the lane hands it to the parser."""
    first = request_line if request_line is not None else b"GET " + TARGET + b" HTTP/1.1"
    return b"\r\n".join([first, *header_lines]) + b"\r\n\r\n"


def parse(*header_lines: bytes, request_line: bytes | None = None) -> lane_head.RequestHead | None:
    return lane_head.parse_request_head(head(*header_lines, request_line=request_line))


# parse_request_head: what is accepted


def test_a_plain_get_is_accepted_with_names_lowered_and_values_stripped():
    got = parse(b"Host: example.com", b"Authorization:   Bearer abc \t", b"X-Request-Id:id-1")
    assert got is not None
    assert got.target == TARGET
    assert got.headers == [
        (b"host", b"example.com"),
        (b"authorization", b"Bearer abc"),
        (b"x-request-id", b"id-1"),
    ]
    assert got.keep_alive is True


def test_connection_close_turns_keep_alive_off_in_any_case_and_list_position():
    for value in (b"close", b"Close", b"keep-alive, CLOSE", b" close ,x-foo"):
        got = parse(b"Host: h", b"Connection: " + value)
        assert got is not None, value
        assert got.keep_alive is False, value
    got = parse(b"Host: h", b"Connection: keep-alive")
    assert got is not None and got.keep_alive is True


def test_content_length_zero_is_a_bodiless_get_and_is_accepted():
    got = parse(b"Host: h", b"Content-Length: 0")
    assert got is not None
    assert (b"content-length", b"0") in got.headers


def test_a_query_string_and_obs_text_in_values_are_accepted():
    """RFC 9110 lets field values carry obs-text (0x80-0xFF) and inner tabs; h11 accepts
    them, so the lane declining them would only be slower, and accepting is what it does."""
    got = parse(
        b"Host: h",
        b"X-Note: caf\xc3\xa9\there",
        request_line=b"GET " + TARGET + b"?a=1&b=%2F HTTP/1.1",
    )
    assert got is not None
    assert got.target == TARGET + b"?a=1&b=%2F"
    assert (b"x-note", b"caf\xc3\xa9\there") in got.headers


# parse_request_head: what is declined (left to h11)


@pytest.mark.parametrize(
    "request_line",
    [
        b"POST " + TARGET + b" HTTP/1.1",
        b"HEAD " + TARGET + b" HTTP/1.1",
        b"PUT " + TARGET + b" HTTP/1.1",
        b"get " + TARGET + b" HTTP/1.1",
        b"GET " + TARGET + b" HTTP/1.0",
        b"GET " + TARGET + b" HTTP/2",
        b"GET " + TARGET,
        b"GET  " + TARGET + b" HTTP/1.1",
        b"GET /api/v1/space/a b HTTP/1.1",  # a space in the target
        b"GET /api/v1/space/caf\xc3\xa9 HTTP/1.1",  # a non-ASCII byte in the target
        b"GET /api/v1/space/a\x7f HTTP/1.1",
        b"GET http://h" + TARGET + b" HTTP/1.1",  # absolute form
        b"GET * HTTP/1.1",
    ],
)
def test_anything_but_a_plain_http11_get_with_an_origin_form_target_is_declined(
    request_line: bytes,
):
    assert parse(b"Host: h", request_line=request_line) is None


@pytest.mark.parametrize(
    "header_line",
    [
        b"Content-Length: 5",
        b"Content-Length: 00",
        b"Content-Length: 0, 0",
        b"Transfer-Encoding: chunked",
        b"transfer-encoding: identity",
        b"Upgrade: websocket",
        b"Connection: upgrade",
        b"Connection: keep-alive, Upgrade",
        b"Expect: 100-continue",
        b"TE: trailers",
    ],
)
def test_a_body_an_upgrade_or_an_expectation_is_declined(header_line: bytes):
    """Each of these makes the request more than a bodiless GET; h11 serves (or refuses) it."""
    assert parse(b"Host: h", header_line) is None


@pytest.mark.parametrize(
    "header_lines",
    [
        (b"Host: h", b"X-A: one", b"  folded"),  # obs-fold continuation line
        (b"Host: h", b"X-A: one", b"\tfolded: too"),
        (b"Host : h",),  # whitespace before the colon (RFC 9112 5.1: reject)
        (b"Host: h", b"X-A : b"),
        (b"Host: h", b": empty-name"),
        (b"Host: h", b"no colon at all"),
        (b"Host: h", b"X(A): b"),  # not a token
        (b"Host: h", b"X-A: a\x00b"),  # NUL in a value
        (b"Host: h", b"X-A: a\x01b"),  # a control character
        (b"Host: h", b"X-A: a\x7fb"),  # DEL
        (b"Host: h", b"X-A: a\rb"),  # a bare CR inside a line
        (b"Host: h", b"X-A: a\nb"),  # a bare LF inside a line
        (b"Host: h", b""),  # an empty line inside the head
    ],
)
def test_malformed_header_lines_are_declined(header_lines: tuple[bytes, ...]):
    assert parse(*header_lines) is None


def test_a_request_needs_exactly_one_host():
    assert parse(b"Accept: */*") is None
    assert parse(b"Host: a", b"Host: a") is None
    assert parse(b"Host: a", b"HOST: b") is None
    assert parse(b"hOsT: a") is not None


# may_be_lane_request and head_end: how much the lane holds back


@pytest.mark.parametrize(
    ("start", "maybe"),
    [
        (b"", True),
        (b"G", True),
        (b"GET", True),
        (b"GET /api", True),
        (b"GET /api/v1/space/", True),
        (b"GET " + TARGET + b" HTTP/1.1\r\nHost: h\r\n", True),
        (b"POST", False),
        (b"P", False),
        (b"get /api", False),
        (b"GET /api/v1/version", False),
        (b"GET /api/v1/spaces", False),
        (b"GET /api/v1/space//", True),  # still the lane's shape; split_target declines later
        (b"GET /panel/", False),
        (b"CONNECT ", False),
    ],
)
def test_may_be_lane_request_on_prefixes(start: bytes, maybe: bool):
    assert lane_head.may_be_lane_request(start) is maybe


def test_head_end_is_the_first_body_byte_or_minus_one():
    full = head(b"Host: h")
    assert lane_head.head_end(b"") == -1
    assert lane_head.head_end(full[:-1]) == -1
    assert lane_head.head_end(full[:-2]) == -1
    assert lane_head.head_end(full) == len(full)
    assert lane_head.head_end(full + b"GET / HTTP/1.1") == len(full)  # pipelined: stops at one


# response_head, chunk, has_body: the bytes the lane writes


def test_response_head_bytes_exactly():
    assert lane_head.response_head(
        200, [(b"content-type", b"application/json"), (b"x-request-id", b"r-1")]
    ) == (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: r-1\r\n\r\n")
    assert lane_head.response_head(429, []) == b"HTTP/1.1 429 Too Many Requests\r\n\r\n"
    # A status http.HTTPStatus does not name (a Hub may answer one): an empty reason, as h11.
    assert lane_head.response_head(599, [(b"a", b"b")]) == b"HTTP/1.1 599 \r\na: b\r\n\r\n"


def test_chunk_framing():
    assert frame_chunk(b"hello") == b"5\r\nhello\r\n"
    assert frame_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert frame_chunk(b"\r\n") == b"2\r\n\r\n\r\n"
    assert LAST_CHUNK == b"0\r\n\r\n"


def test_has_body_by_status():
    assert [s for s in (101, 200, 201, 204, 206, 304, 404, 500) if lane_head.has_body(s)] == [
        200,
        201,
        206,
        404,
        500,
    ]


# split_target: the Space and Hub, or None when Starlette and the middleware must decide


@pytest.mark.parametrize(
    ("target", "names"),
    [
        (b"/api/v1/space/S/api/v1/sth/H/api/v1/version", ("S", "H")),
        (b"/api/v1/space/org-a-s1/api/v1/sth/hub.x_1/api/v1/a/b/c", ("org-a-s1", "hub.x_1")),
        (b"/api/v1/space/S/api/v1/sth/H/api/v1", ("S", "H")),  # the Hub's API root itself
        (b"/api/v1/space/S/api/v1/sth/H/api/v1/", ("S", "H")),
        (b"/api/v1/space/S/api/v1/sth/H/api/v1/version?x=%2F%2F//", ("S", "H")),  # query
        (b"/api/v1/space/S/api/v1/sth/H/api/v1?", ("S", "H")),
    ],
)
def test_split_target_accepts_plain_proxied_paths(target: bytes, names: tuple[str, str]):
    assert split_target(target) == names


@pytest.mark.parametrize(
    "target",
    [
        b"/api/v1/space/S%2Fx/api/v1/sth/H/api/v1/version",  # an escape in the Space
        b"/api/v1/space/S/api/v1/sth/H%41/api/v1/version",  # in the Hub
        b"/api/v1/space/S/api/v1/sth/H/api/v1/a%2F..%2Fb",  # in the rest
        b"/api/v1/space/S/api/v1/sth/H/api/v1/%",
        b"/api/v1/space/S/api/v1/sth/H/api/v1//version",  # an empty segment
        b"/api/v1/space//api/v1/sth/H/api/v1/version",
        b"/api/v1/space/S/api/v1/sth//api/v1/version",  # an empty Hub (and //)
        b"/api/v1/space/S/api/v1/sth/",  # an empty Hub
        b"/api/v1/space/S/api/v1/sth/H",  # no /api/v1 after the Hub
        b"/api/v1/space/S/api/v1/sth/H/",
        b"/api/v1/space/S/api/v1/sth/H/info",
        b"/api/v1/space/S/api/v1/sth/H/api/v2/version",
        b"/api/v1/space/S/api/v1/sth/H/api/v1x",
        b"/api/v1/space/S/api/v1/sth/H/api",
        b"/api/v1/space/S/api/v1/list",  # a Space route, not a Hub's
        b"/api/v1/space/S/api/v1/sthx/H/api/v1/version",
        b"/api/v1/space/S/api/v2/sth/H/api/v1/version",
        b"/api/v1/space/S",
        b"/api/v1/spaces",
        b"/api/v1/version",
        b"/api/v1/space/S/api/v1/sth/H/api/v1#frag",
    ],
)
def test_split_target_declines_what_the_routes_would_decode_or_rewrite(target: bytes):
    assert split_target(target) is None


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/space/S/api/v1/sth/H/api/v1",
        "/api/v1/space/S/api/v1/sth/H/api/v1/",
        "/api/v1/space/S/api/v1/sth/H/api/v1/version",
        "/api/v1/space/S/api/v1/sth/H/api/v1/a/../../list",
        "/api/v1/space/S/api/v1/sth/H/api/v1x",
        "/api/v1/space/S/api/v1/sth/H/api/v1#x",
        "/api/v1/space/S/api/v1/sth/H",
        "/api/v1/space/S/api/v1/sth/H/api/v2",
        "/api/v1/space/S/api/v1/list",
        "/api/v1/space/S/api/v1/sth/H/info",
        "/api/v1/space/S;x/api/v1/sth/H;y/api/v1/z",
    ],
)
def test_split_target_takes_exactly_what_the_rate_limiter_meters_and_the_proxy_serves(path: str):
    """The lane applies the rate limit itself to every request it takes; the middleware only
    to paths matching `PROXIED`. Were they to disagree, one door would meter a request the
    other lets through. And whatever the lane takes, HubProxy must recognise as a Hub path."""
    raw = path.encode()
    taken = split_target(raw) is not None
    assert taken == bool(PROXIED.match(path)), path
    assert taken == bool(PROXY_PREFIX.match(raw)), path
    if taken:
        space, hub = path.split("/")[4], path.split("/")[8]
        assert split_target(raw) == (space, hub)
        assert re.fullmatch(r"[^/%]+", space) and re.fullmatch(r"[^/%]+", hub)
