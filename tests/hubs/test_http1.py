"""The HTTP/1.1 client codec (manager/hubs/http1.py), sans I/O: exact request bytes out,
exact response events in, for every way the bytes may be cut on the way; and everything an
untrusted Hub may send that the codec must refuse.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manager.hubs.http1 import (
    CLOSED,
    END,
    MAX_CHUNK_LINE,
    MAX_HEAD,
    NEED_DATA,
    ClientConnection,
    Event,
    Headers,
    LocalError,
    ProtocolError,
    Response,
)

PROPERTY = settings(
    database=None,
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# helpers


def started(method: bytes = b"GET", headers: Headers | None = None) -> ClientConnection:
    """A connection whose request (without a body) is complete."""
    conn = ClientConnection()
    conn.request(method, b"/", headers or [])
    assert conn.request_done
    return conn


def drain(conn: ClientConnection) -> list[Event]:
    """Events up to and including the first NEED_DATA, END or CLOSED."""
    out: list[Event] = []
    while True:
        event = conn.next_event()
        out.append(event)
        if event is NEED_DATA or event is END or event is CLOSED:
            return out


def run(
    pieces: Iterable[bytes], *, method: bytes = b"GET", eof: bool = False
) -> tuple[ClientConnection, list[Event]]:
    """Feed each piece with a receive of its own (then the end, with `eof`): the events in
    order, NEED_DATA left out."""
    conn = started(method)
    events: list[Event] = []
    for piece in pieces:
        assert piece, "an empty receive is the end of the connection"
        conn.receive(piece)
        events += drain(conn)
    if eof:
        conn.receive(b"")
        events += drain(conn)
    return conn, [e for e in events if e is not NEED_DATA]


def split(data: bytes, points: Iterable[int]) -> list[bytes]:
    cuts = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in pairwise(cuts)]


def body_of(events: Sequence[Event]) -> bytes:
    pieces = [e for e in events if type(e) is bytes]
    assert all(pieces), "no empty body piece is an event"
    return b"".join(pieces)


def refused(data: bytes, *, method: bytes = b"GET") -> list[Event]:
    """The events before `data` is refused with ProtocolError (which must happen)."""
    conn = started(method)
    conn.receive(data)
    events: list[Event] = []
    with pytest.raises(ProtocolError):
        while True:
            event = conn.next_event()
            assert event is not NEED_DATA and event is not END and event is not CLOSED, events
            events.append(event)
    return events


# the request


def test_a_get_head_is_the_request_line_and_headers_in_order():
    conn = ClientConnection()
    head = conn.request(
        b"GET",
        b"/api/v1/version?x=1",
        [(b"host", b"hub"), (b"Accept", b"application/json"), (b"x-empty", b"")],
    )
    assert head == (
        b"GET /api/v1/version?x=1 HTTP/1.1\r\n"
        b"host: hub\r\n"
        b"Accept: application/json\r\n"
        b"x-empty: \r\n"
        b"\r\n"
    )
    assert conn.request_done  # no framing header: no body
    assert conn.end() == b""
    with pytest.raises(LocalError):
        conn.data(b"x")


def test_a_head_without_headers():
    conn = ClientConnection()
    assert conn.request(b"DELETE", b"/a", []) == b"DELETE /a HTTP/1.1\r\n\r\n"
    assert conn.request_done


def test_a_content_length_body_passes_through_and_ends_at_its_length():
    conn = ClientConnection()
    head = conn.request(b"POST", b"/p", [(b"Content-Length", b"10")])
    assert head == b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    assert not conn.request_done
    assert conn.data(b"hello") == b"hello"
    assert conn.data(b"") == b""
    assert conn.data(b"world") == b"world"
    assert not conn.request_done  # only end() completes it
    assert conn.end() == b""
    assert conn.request_done
    assert conn.end() == b""  # again: nothing more
    with pytest.raises(LocalError):
        conn.data(b"x")


def test_more_request_body_than_its_content_length_is_a_local_error():
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"content-length", b"5")])
    with pytest.raises(LocalError):
        conn.data(b"hello!")
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"content-length", b"5")])
    assert conn.data(b"hel") == b"hel"
    with pytest.raises(LocalError):
        conn.data(b"lo!")
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"content-length", b"5")])
    assert conn.data(b"hello") == b"hello"
    with pytest.raises(LocalError):
        conn.data(b"!")


def test_a_request_body_ended_short_of_its_content_length_is_a_local_error():
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"content-length", b"5")])
    assert conn.data(b"hell") == b"hell"
    with pytest.raises(LocalError):
        conn.end()
    assert not conn.request_done
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"content-length", b"5")])
    with pytest.raises(LocalError):
        conn.end()


def test_content_length_zero_is_done_at_once():
    conn = ClientConnection()
    assert conn.request(b"POST", b"/", [(b"content-length", b"0")]).endswith(b"\r\n\r\n")
    assert conn.request_done
    assert conn.end() == b""


def test_an_empty_body_may_be_sent_under_content_length_zero():
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"content-length", b"0")])
    assert conn.data(b"") == b""
    assert conn.end() == b""
    assert conn.request_done


def test_a_chunked_body_is_framed_chunk_by_chunk():
    conn = ClientConnection()
    head = conn.request(b"POST", b"/t", [(b"Transfer-Encoding", b"chunked")])
    assert head == b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert not conn.request_done
    assert conn.data(b"hello") == b"5\r\nhello\r\n"
    assert conn.data(b"") == b""  # an empty chunk would end the body: nothing is sent
    assert conn.data(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert conn.data(b"\r\n0\r\n\r\n") == b"7\r\n\r\n0\r\n\r\n\r\n"  # data is data
    assert not conn.request_done
    assert conn.end() == b"0\r\n\r\n"
    assert conn.request_done
    assert conn.end() == b""
    with pytest.raises(LocalError):
        conn.data(b"late")


def test_an_empty_chunked_body_is_the_last_chunk_alone():
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"transfer-encoding", b"chunked")])
    assert conn.end() == b"0\r\n\r\n"
    assert conn.request_done


PARTS = (b"POST", b"/target", b"x-name", b"value")


@pytest.mark.parametrize("bad", [b"\r", b"\n", b"\r\n", b"\x00", b"\r\nx-evil: 1\r\n"])
@pytest.mark.parametrize("where", ["method", "target", "name", "value"])
def test_cr_lf_or_nul_anywhere_in_the_head_is_a_local_error(where: str, bad: bytes):
    parts = list(PARTS)
    i = ("method", "target", "name", "value").index(where)
    parts[i] = parts[i][:2] + bad + parts[i][2:]
    for at_end in (False, True):
        conn = ClientConnection()
        headers = [(b"host", b"hub"), (parts[2], parts[3])]
        if at_end:
            headers.reverse()
        with pytest.raises(LocalError):
            conn.request(parts[0], parts[1], headers)


def test_the_same_parts_without_cr_lf_or_nul_are_sent():
    conn = ClientConnection()
    head = conn.request(PARTS[0], PARTS[1], [(b"host", b"hub"), (PARTS[2], PARTS[3])])
    assert head == b"POST /target HTTP/1.1\r\nhost: hub\r\nx-name: value\r\n\r\n"


@pytest.mark.parametrize(
    "value", [b"", b"abc", b"-1", b"+5", b" 5", b"5 ", b"0x10", b"1_0", b"5,5"]
)
def test_a_non_digit_request_content_length_is_a_local_error(value: bytes):
    conn = ClientConnection()
    with pytest.raises(LocalError):
        conn.request(b"POST", b"/", [(b"content-length", value)])


def test_a_request_content_length_too_long_to_convert_is_a_local_error():
    conn = ClientConnection()
    with pytest.raises(LocalError):
        conn.request(b"POST", b"/", [(b"content-length", b"9" * 5000)])


OK_5 = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close", b"CLOSE"])
def test_connection_close_in_the_request_means_not_reusable(value: bytes):
    conn = ClientConnection()
    conn.request(b"GET", b"/", [(b"Connection", value)])
    assert not conn.keep_alive
    conn.receive(OK_5)
    assert drain(conn)[1:] == [b"hello", END]
    assert not conn.reusable


def test_without_connection_close_the_same_exchange_is_reusable():
    conn = ClientConnection()
    conn.request(b"GET", b"/", [(b"connection", b"keep-alive")])
    conn.receive(OK_5)
    assert drain(conn)[1:] == [b"hello", END]
    assert conn.reusable


def test_a_response_before_the_request_body_is_done_is_not_reusable():
    conn = ClientConnection()
    conn.request(b"POST", b"/", [(b"content-length", b"5")])
    conn.data(b"he")
    conn.receive(b"HTTP/1.1 413 Too Large\r\ncontent-length: 0\r\n\r\n")
    assert drain(conn) == [Response(413, [(b"content-length", b"0")]), END]
    assert not conn.reusable


# responses framed by Content-Length

HEAD_10 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"
BODY_10 = b"0123456789"
RESPONSE_10 = Response(200, [(b"content-type", b"text/plain"), (b"content-length", b"10")])


def test_a_content_length_body_in_one_piece():
    conn, events = run([HEAD_10, BODY_10])
    assert events == [RESPONSE_10, BODY_10, END]
    assert conn.reusable
    assert conn.next_event() is END  # and stays done


def test_a_content_length_body_in_many_small_pieces():
    conn, events = run([HEAD_10, *(BODY_10[i : i + 3] for i in range(0, 10, 3))])
    assert events == [RESPONSE_10, b"012", b"345", b"678", b"9", END]
    assert conn.reusable


def test_a_content_length_head_and_body_in_one_piece():
    conn, events = run([HEAD_10 + BODY_10])
    assert events == [RESPONSE_10, BODY_10, END]
    assert conn.reusable


def test_a_content_length_response_one_byte_at_a_time():
    wire = HEAD_10 + BODY_10
    conn, events = run([wire[i : i + 1] for i in range(len(wire))])
    assert events == [RESPONSE_10, *(bytes([b]) for b in BODY_10), END]
    assert conn.reusable


def test_a_content_length_response_in_every_two_way_split():
    wire = HEAD_10 + BODY_10
    for i in range(1, len(wire)):
        conn, events = run([wire[:i], wire[i:]])
        assert events[0] == RESPONSE_10, i
        assert body_of(events) == BODY_10, i
        assert events[-1] is END, i
        assert conn.reusable, i


def test_content_length_zero_is_an_empty_body():
    conn, events = run([b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"])
    assert events == [Response(200, [(b"content-length", b"0")]), END]
    assert conn.reusable


def test_headers_are_lower_cased_and_values_stripped_in_order():
    conn, events = run(
        [b"HTTP/1.1 200 OK\r\nX-A:  one \t\r\nx-b:two\r\nX-A: \r\nContent-Length: 0\r\n\r\n"]
    )
    assert events == [
        Response(
            200, [(b"x-a", b"one"), (b"x-b", b"two"), (b"x-a", b""), (b"content-length", b"0")]
        ),
        END,
    ]
    assert conn.reusable


@pytest.mark.parametrize(
    "status_line", [b"HTTP/1.1 200", b"HTTP/1.1 200 ", b"HTTP/1.1 404 Not \tFound \xe9"]
)
def test_a_reason_phrase_is_optional_and_any_text(status_line: bytes):
    conn, events = run([status_line + b"\r\ncontent-length: 0\r\n\r\n"])
    assert events == [Response(int(status_line[9:12]), [(b"content-length", b"0")]), END]
    assert conn.reusable


def test_a_response_without_headers_has_its_body_until_the_end():
    conn, events = run([b"HTTP/1.1 200 OK\r\n\r\nabc"])
    assert events == [Response(200, []), b"abc"]
    assert not conn.keep_alive


def test_identical_content_lengths_are_one():
    for head in (
        b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5,5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\n",
    ):
        conn, events = run([head + b"hello"])
        assert body_of(events) == b"hello" and events[-1] is END, head
        assert conn.reusable


# chunked responses

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
CHUNKED_RESPONSE = Response(200, [(b"transfer-encoding", b"Chunked")])
CHUNKED_BODY_WIRE = (
    b"5;foo=bar\r\nhello\r\n"
    b"A\r\n0123456789\r\n"
    b'a ; name="quoted; value"\r\nabcdefghij\r\n'
    b"1B\r\n" + b"z" * 27 + b"\r\n"
    b"001\r\n\r\r\n"
    b"0;last\r\nX-Trailer: yes\r\nx-other:  2 \r\n\r\n"
)
CHUNKED_BODY = b"hello0123456789abcdefghij" + b"z" * 27 + b"\r"
CHUNKED_WIRE = CHUNKED_HEAD + CHUNKED_BODY_WIRE


def test_a_chunked_body_in_one_piece():
    conn, events = run([CHUNKED_WIRE])
    assert events == [
        CHUNKED_RESPONSE,
        b"hello",
        b"0123456789",
        b"abcdefghij",
        b"z" * 27,
        b"\r",
        END,
    ]  # trailers are no event
    assert conn.reusable


def test_a_chunked_body_one_byte_at_a_time():
    conn, events = run([CHUNKED_WIRE[i : i + 1] for i in range(len(CHUNKED_WIRE))])
    assert events[0] == CHUNKED_RESPONSE
    assert all(type(e) is bytes and len(e) == 1 for e in events[1:-1])
    assert body_of(events) == CHUNKED_BODY
    assert events[-1] is END
    assert conn.reusable


def test_a_chunked_body_in_every_two_way_split():
    for i in range(1, len(CHUNKED_WIRE)):
        conn, events = run([CHUNKED_WIRE[:i], CHUNKED_WIRE[i:]])
        assert events[0] == CHUNKED_RESPONSE, i
        assert body_of(events) == CHUNKED_BODY, i
        assert events[-1] is END and events.count(END) == 1, i
        assert conn.reusable, i


def test_a_chunked_body_in_every_three_way_split():
    body_start = len(CHUNKED_HEAD)
    for i in range(body_start, len(CHUNKED_WIRE)):
        for j in range(i + 1, len(CHUNKED_WIRE)):
            conn, events = run([CHUNKED_WIRE[:i], CHUNKED_WIRE[i:j], CHUNKED_WIRE[j:]])
            assert body_of(events) == CHUNKED_BODY, (i, j)
            assert events[-1] is END and conn.reusable, (i, j)


def test_an_empty_chunked_body():
    conn, events = run([CHUNKED_HEAD + b"0\r\n\r\n"])
    assert events == [CHUNKED_RESPONSE, END]
    assert conn.reusable


def test_chunk_sizes_in_upper_and_lower_case_hex_with_extensions():
    chunk = bytes(range(256)) * 2  # 0x200 bytes
    for size in (b"200", b"0200", b"200;a=b;c", b"200 ;x", b"200\t"):
        conn, events = run([CHUNKED_HEAD + size + b"\r\n" + chunk + b"\r\n0\r\n\r\n"])
        assert body_of(events) == chunk and events[-1] is END, size
    for size in (b"ff", b"FF", b"fF", b"00000000000000fF"):  # 16 digits at most
        conn, events = run([CHUNKED_HEAD + size + b"\r\n" + b"y" * 255 + b"\r\n0\r\n\r\n"])
        assert body_of(events) == b"y" * 255 and events[-1] is END, size
        assert conn.reusable


def test_a_bad_trailer_is_refused():
    assert refused(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nno colon\r\n\r\n") == [
        CHUNKED_RESPONSE,
        b"abc",
    ]
    refused(CHUNKED_HEAD + b"0\r\nx-t: a\x01b\r\n\r\n")
    refused(CHUNKED_HEAD + b"0\r\nbad name: 1\r\n\r\n")


def test_the_trailer_section_may_arrive_cut_anywhere():
    end = b"0\r\nx-a: 1\r\nx-b: 2\r\n\r\n"
    for i in range(1, len(end)):
        conn, events = run([CHUNKED_HEAD + b"2\r\nhi\r\n", end[:i], end[i:]])
        assert body_of(events) == b"hi" and events[-1] is END and conn.reusable, i


# responses without framing, or without a body

UNFRAMED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n"


def test_no_framing_means_a_body_until_the_connection_ends():
    conn = started()
    conn.receive(UNFRAMED_HEAD + b"abc")
    assert drain(conn) == [Response(200, [(b"content-type", b"text/plain")]), b"abc", NEED_DATA]
    assert not conn.keep_alive
    conn.receive(b"def")
    assert drain(conn) == [b"def", NEED_DATA]
    conn.receive(b"")
    assert drain(conn) == [END]
    assert not conn.reusable


def test_no_framing_and_an_empty_body():
    conn, events = run([UNFRAMED_HEAD], eof=True)
    assert events == [Response(200, [(b"content-type", b"text/plain")]), END]
    assert not conn.reusable


@pytest.mark.parametrize(
    "framing",
    [[(b"content-length", b"5")], [(b"transfer-encoding", b"chunked")], []],
)
def test_the_answer_to_head_has_no_body(framing: Headers):
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in framing)
    conn, events = run([head + b"\r\n"], method=b"HEAD")
    assert events == [Response(200, framing), END]
    assert conn.reusable


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status: int):
    conn, events = run([b"HTTP/1.1 %d X\r\n\r\n" % status])
    assert events == [Response(status, []), END]
    assert conn.reusable
    # a 304 may say the length of what it did not send
    conn, events = run([b"HTTP/1.1 %d X\r\ncontent-length: 5\r\n\r\n" % status])
    assert events == [Response(status, [(b"content-length", b"5")]), END]
    assert conn.reusable


def test_bytes_after_an_answer_without_body_leave_the_connection_unusable():
    # Not a ProtocolError (unlike bytes after a body), but never reused.
    for method, head in (
        (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (b"GET", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
        (b"HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
    ):
        conn, events = run([head + b"hello"], method=method)
        assert events[-1] is END
        assert not conn.reusable, head


def test_bytes_or_the_end_after_a_complete_response_make_it_unusable():
    conn, events = run([OK_5])
    assert conn.reusable
    conn.receive(b"x")
    assert not conn.reusable
    conn, events = run([OK_5], eof=True)
    assert events[-1] is END
    assert not conn.reusable


# informational answers, versions, connection: close


def test_100_continue_then_the_answer():
    wire = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    )
    expected = [
        Response(100, []),
        Response(103, [(b"link", b"</a>")]),
        Response(200, [(b"content-length", b"2")]),
        b"ok",
        END,
    ]
    conn, events = run([wire])
    assert events == expected
    assert [isinstance(e, Response) and e.informational for e in events[:3]] == [
        True,
        True,
        False,
    ]
    assert conn.reusable
    for i in range(1, len(wire)):
        conn, events = run([wire[:i], wire[i:]])
        assert events[:3] == expected[:3] and body_of(events) == b"ok", i
        assert events[-1] is END and conn.reusable, i


def test_the_end_after_100_continue_is_closed():
    conn, events = run([b"HTTP/1.1 100 Continue\r\n\r\n"], eof=True)
    assert events == [Response(100, []), CLOSED]
    assert not conn.reusable


def test_101_switching_protocols_is_refused():
    refused(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n")


def test_an_http_1_0_answer_is_not_reusable():
    for head in (
        b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\r\n",
    ):
        conn, events = run([head + b"hello"])
        assert body_of(events) == b"hello" and events[-1] is END
        assert not conn.keep_alive and not conn.reusable


@pytest.mark.parametrize("value", [b"close", b"Close", b"keep-alive, close"])
def test_connection_close_in_the_answer_means_not_reusable(value: bytes):
    for body in (b"content-length: 5\r\n\r\nhello", b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n"):
        conn, events = run([b"HTTP/1.1 200 OK\r\nConnection: " + value + b"\r\n" + body])
        assert events[-1] is END
        assert not conn.keep_alive and not conn.reusable


# what a Hub may not send


@pytest.mark.parametrize(
    "status_line",
    [
        b"",
        b"HTTP/1.1",
        b"HTTP/1.1 ",
        b"HTTP/1.1 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 099 Low",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1 200OK",
        b"HTTP/2 200",
        b"HTTP/2.0 200 OK",
        b"HTTP/1.2 200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1 200 O\x00K",
        b"HTTP/1.1 200 O\x7fK",
        b"HTTP/1.1 200 O\rK",
        b" HTTP/1.1 200 OK",
        b"garbage",
        b"\x16\x03\x01\x02\x00",
    ],
)
def test_a_bad_status_line_is_refused(status_line: bytes):
    assert refused(status_line + b"\r\ncontent-length: 0\r\n\r\n") == []


@pytest.mark.parametrize(
    "line",
    [
        b"no colon here",
        b"bad name: 1",
        b"bad-name : 1",
        b": no name",
        b"x-(): 1",
        b"x-a: 1\r\n continued",  # obs-fold
        b"x-a: 1\r\n\tcontinued",
        b"x-a: a\x01b",
        b"x-a: a\x7fb",
        b"x-a: a\x00b",
        b"x-a: a\rb",  # bare CR
        b"x-a: a\nb",  # bare LF
        b"x-a\n: b",
    ],
)
def test_a_bad_header_line_is_refused(line: bytes):
    assert refused(b"HTTP/1.1 200 OK\r\n" + line + b"\r\ncontent-length: 0\r\n\r\n") == []


@pytest.mark.parametrize(
    "headers",
    [
        b"content-length: abc",
        b"content-length: -1",
        b"content-length: +5",
        b"content-length: 0x5",
        b"content-length: 1_0",
        b"content-length: ",
        b"content-length: 5 5",
        b"content-length: 5,",
        b"content-length: 5, 6",
        b"content-length: 5\r\ncontent-length: 6",
        b"content-length: 5, 5\r\ncontent-length: 6",
        b"transfer-encoding: gzip",
        b"transfer-encoding: identity",
        b"transfer-encoding: chunked, gzip",
        b"transfer-encoding: gzip, chunked",
        b"transfer-encoding: chunked\r\ntransfer-encoding: chunked",
        b"content-length: 5\r\ntransfer-encoding: chunked",
        b"transfer-encoding: chunked\r\ncontent-length: 5",
    ],
)
def test_bad_framing_headers_are_refused(headers: bytes):
    assert refused(b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n\r\nhello") == []


def test_a_content_length_too_long_to_convert_is_refused():
    refused(b"HTTP/1.1 200 OK\r\ncontent-length: " + b"1" * 5000 + b"\r\n\r\n")


def test_a_head_larger_than_max_head_without_its_end_is_refused():
    start = b"HTTP/1.1 200 OK\r\nx-big: "
    filler = b"a" * (MAX_HEAD - len(start))
    conn = started()
    conn.receive(start + filler)  # MAX_HEAD bytes: still waiting
    assert drain(conn) == [NEED_DATA]
    conn.receive(b"a")
    with pytest.raises(ProtocolError):
        conn.next_event()
    refused(start + b"a" * 2 * MAX_HEAD)


def test_a_head_larger_than_max_head_arriving_in_pieces_is_refused():
    conn = started()
    conn.receive(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError):
        for _ in range(MAX_HEAD // 4096 + 2):
            assert conn.next_event() is NEED_DATA
            conn.receive(b"x-h: " + b"a" * 4089 + b"\r\n")


def test_a_head_larger_than_max_head_is_refused_when_it_arrives_whole():
    refused(b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 2 * MAX_HEAD + b"\r\ncontent-length: 0\r\n\r\n")


def test_trailers_larger_than_max_head_without_their_end_are_refused():
    refused(CHUNKED_HEAD + b"0\r\nx-big: " + b"a" * MAX_HEAD)


def test_trailers_larger_than_max_head_are_refused_when_they_arrive_whole():
    refused(CHUNKED_HEAD + b"0\r\nx-big: " + b"a" * 2 * MAX_HEAD + b"\r\n\r\n")


def test_a_chunk_size_line_longer_than_max_chunk_line_is_refused():
    line = b"5;" + b"e" * (MAX_CHUNK_LINE - 2)  # MAX_CHUNK_LINE bytes
    conn = started()
    conn.receive(CHUNKED_HEAD + line)
    assert drain(conn) == [CHUNKED_RESPONSE, NEED_DATA]
    conn.receive(b"ee")  # no CRLF within MAX_CHUNK_LINE + 2 bytes
    with pytest.raises(ProtocolError):
        conn.next_event()
    assert refused(CHUNKED_HEAD + line + b"e\r\nhello\r\n0\r\n\r\n") == [CHUNKED_RESPONSE]


def test_a_chunk_size_line_of_max_chunk_line_bytes_is_accepted():
    line = b"5;" + b"e" * (MAX_CHUNK_LINE - 2)
    conn, events = run([CHUNKED_HEAD + line + b"\r\nhello\r\n0\r\n\r\n"])
    assert events == [CHUNKED_RESPONSE, b"hello", END]
    assert conn.reusable


def test_a_chunk_size_line_of_max_chunk_line_bytes_may_be_cut_before_its_lf():
    line = b"5;" + b"e" * (MAX_CHUNK_LINE - 2)
    conn, events = run([CHUNKED_HEAD + line + b"\r", b"\nhello\r\n0\r\n\r\n"])
    assert events == [CHUNKED_RESPONSE, b"hello", END]
    assert conn.reusable


@pytest.mark.parametrize(
    "size",
    [
        b"zz",
        b"",
        b"-5",
        b" 5",
        b"+5",
        b"0x5",
        b"5 x",
        b"5;\x00",
        b"5;\x7f",
        b"g",
        b"1" * 17,
        b"5\x0b",
    ],
)
def test_a_bad_chunk_size_is_refused(size: bytes):
    assert refused(CHUNKED_HEAD + size + b"\r\nhello\r\n0\r\n\r\n") == [CHUNKED_RESPONSE]


@pytest.mark.parametrize("after", [b"XY0\r\n\r\n", b"\n0\r\n\r\n", b"\r\r\n0\r\n\r\n", b"!\r\n"])
def test_chunk_data_not_followed_by_crlf_is_refused(after: bytes):
    assert refused(CHUNKED_HEAD + b"5\r\nhello" + after) == [CHUNKED_RESPONSE, b"hello"]


def test_bytes_after_a_content_length_body_are_refused():
    assert refused(HEAD_10 + BODY_10 + b"X") == [RESPONSE_10]
    assert refused(HEAD_10 + BODY_10 + b"HTTP/1.1 200 OK\r\n\r\n") == [RESPONSE_10]
    conn = started()  # with the body in pieces: the last one holds the extra byte
    conn.receive(HEAD_10 + BODY_10[:4])
    assert drain(conn) == [RESPONSE_10, BODY_10[:4], NEED_DATA]
    conn.receive(BODY_10[4:] + b"X")
    with pytest.raises(ProtocolError):
        conn.next_event()


def test_bytes_after_a_chunked_body_are_refused():
    assert refused(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n\r\nX") == [CHUNKED_RESPONSE, b"hello"]
    assert refused(CHUNKED_HEAD + b"0\r\n\r\n\r\n") == [CHUNKED_RESPONSE]
    assert refused(CHUNKED_HEAD + b"0\r\nx-t: 1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n") == [
        CHUNKED_RESPONSE
    ]


# the other side ending


def test_the_end_before_any_byte_is_closed():
    conn, events = run([], eof=True)
    assert events == [CLOSED]
    assert conn.next_event() is CLOSED
    assert not conn.reusable


def test_the_end_inside_a_head_is_refused():
    head = HEAD_10
    for i in range(1, len(head)):
        conn = started()
        conn.receive(head[:i])
        assert conn.next_event() is NEED_DATA, i
        conn.receive(b"")
        with pytest.raises(ProtocolError):
            conn.next_event()


def test_the_end_inside_a_content_length_body_is_closed():
    for i in range(len(BODY_10)):
        pieces = [HEAD_10, BODY_10[:i]] if i else [HEAD_10]
        conn, events = run(pieces, eof=True)
        assert events == [RESPONSE_10, *([BODY_10[:i]] if i else []), CLOSED], i
        assert not conn.reusable


def test_the_end_anywhere_inside_a_chunked_body_is_closed():
    for i in range(len(CHUNKED_HEAD), len(CHUNKED_WIRE)):
        conn, events = run([CHUNKED_WIRE[:i]], eof=True)
        assert events[0] == CHUNKED_RESPONSE, i
        assert CHUNKED_BODY.startswith(body_of(events)), i
        assert events[-1] is CLOSED and END not in events, i
        assert not conn.reusable, i


# properties


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(the wire bytes of a chunked body, the body they carry)"""
    chunks = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=12))
    wire = []
    for chunk in chunks:
        digits = b"%0*x" % (draw(st.integers(0, 4)), len(chunk))
        if draw(st.booleans()):
            digits = digits.upper()
        ext = draw(st.sampled_from([b"", b";a=b", b" ;x", b';n="v;\\""']))
        wire.append(digits + ext + b"\r\n" + chunk + b"\r\n")
    trailers = draw(st.sampled_from([b"", b"x-t: 1\r\n", b"x-a: 1\r\nx-b:\r\n"]))
    return b"".join(wire) + b"0\r\n" + trailers + b"\r\n", b"".join(chunks)


@PROPERTY
@given(body=chunked_bodies(), points=st.lists(st.integers(0, 2**16), max_size=30))
def test_random_chunked_bodies_cut_anywhere_decode_to_their_bytes(
    body: tuple[bytes, bytes], points: list[int]
):
    wire, data = body
    conn, events = run(split(CHUNKED_HEAD + wire, points))
    assert events[0] == CHUNKED_RESPONSE
    assert body_of(events) == data
    assert events[-1] is END and events.count(END) == 1
    assert conn.reusable


@PROPERTY
@given(data=st.binary(max_size=2000), points=st.lists(st.integers(0, 2**16), max_size=30))
def test_random_content_length_bodies_cut_anywhere_decode_to_their_bytes(
    data: bytes, points: list[int]
):
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(data)
    conn, events = run(split(head + data, points))
    assert events[0] == Response(200, [(b"content-length", b"%d" % len(data))])
    assert body_of(events) == data
    assert events[-1] is END and conn.reusable


@PROPERTY
@given(chunks=st.lists(st.binary(max_size=300), max_size=12))
def test_what_the_request_side_frames_the_response_side_decodes(chunks: list[bytes]):
    sender = ClientConnection()
    sender.request(b"POST", b"/", [(b"transfer-encoding", b"chunked")])
    wire = b"".join(sender.data(c) for c in chunks) + sender.end()
    conn, events = run([CHUNKED_HEAD + wire])
    assert body_of(events) == b"".join(chunks) and events[-1] is END
    assert sender.request_done and conn.reusable
