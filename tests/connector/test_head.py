"""Routing a channel by its request head (h11), and the bytes forwarded to the Hub."""

from __future__ import annotations

import json

import h11
import pytest

from manager.connector.errors import BadRequestHead
from manager.connector.head import HeadSniffer, simple_response

CONTROL = (
    b"POST /api/v1/platform HTTP/1.1\r\nhost: hub\r\ncontent-type: application/x-ndjson\r\n"
    b"transfer-encoding: chunked\r\n\r\n17\r\n"
)
UPLOAD = (
    b"POST /api/v1/sequence HTTP/1.1\r\nHost: hub\r\nConnection: keep-alive\r\n"
    b"X-Custom: Yes\r\nContent-Length: 10\r\n\r\n0123"
)


def test_control_channel_is_recognised_byte_by_byte():
    sniffer = HeadSniffer()
    end = CONTROL.index(b"\r\n\r\n") + 4
    for i in range(end - 1):
        assert sniffer.feed(CONTROL[i : i + 1]) is None
    head = sniffer.feed(CONTROL[end - 1 : end + 2])
    assert head is not None and head.is_control
    assert head.rest == b"17"
    assert sniffer.seen == end + 2


def test_forwarded_head_closes_after_one_exchange_and_keeps_the_rest():
    sniffer = HeadSniffer()
    assert sniffer.feed(UPLOAD[:20]) is None
    head = sniffer.feed(UPLOAD[20:])
    assert head is not None and not head.is_control
    assert head.raw_head + head.rest == UPLOAD
    assert head.rest == b"0123"
    out = head.for_hub()
    server = h11.Connection(h11.SERVER)
    server.receive_data(out + head.rest + b"456789")
    request = server.next_event()
    assert isinstance(request, h11.Request)
    headers = list(request.headers.raw_items())
    assert (b"Host", b"hub") in headers
    assert (b"X-Custom", b"Yes") in headers
    assert [v for k, v in headers if k.lower() == b"connection"] == [b"close"]
    body = server.next_event()
    assert isinstance(body, h11.Data) and bytes(body.data) == b"0123456789"


@pytest.mark.parametrize(
    "data",
    [b"\x16\x03\x01garbage\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"NOT HTTP AT ALL\r\n\r\n"],
)
def test_bad_heads(data: bytes):
    with pytest.raises(BadRequestHead):
        HeadSniffer().feed(data)


def test_head_too_big_and_early_end():
    sniffer = HeadSniffer(max_head=1024)
    sniffer.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(BadRequestHead):
        sniffer.feed(b"X-Long: " + b"a" * 2000)
    early = HeadSniffer()
    early.feed(b"GET / HT")
    with pytest.raises(BadRequestHead):
        early.feed(b"")


def test_simple_response_is_valid_http():
    sniffer = HeadSniffer()
    sniffer.feed(b"GET /api/v1/version HTTP/1.1\r\nHost: hub\r\n\r\n")
    raw = simple_response(sniffer.conn, 502, "Local Hub not reachable")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    response = client.next_event()
    assert isinstance(response, h11.Response) and response.status_code == 502
    body = client.next_event()
    assert isinstance(body, h11.Data)
    assert json.loads(bytes(body.data)) == {"error": "Local Hub not reachable"}
    assert isinstance(client.next_event(), h11.EndOfMessage)


def test_an_error_response_after_a_bad_head():
    sniffer = HeadSniffer()
    with pytest.raises(BadRequestHead):
        sniffer.feed(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    assert simple_response(sniffer.conn, 400, "Bad Request").startswith(b"HTTP/1.1 400")
