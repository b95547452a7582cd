"""frames.py: every encoder against the frames of spec §3.2/§3.13."""

from __future__ import annotations

import pytest

from manager.mux import UsageError
from manager.mux.frames import (
    encode_data_header,
    encode_end,
    encode_error_end,
    encode_handshake,
    encode_keep_alive,
    encode_payload,
    encode_pre_handshake,
    encode_status,
    read_fields,
)
from tests.mux.helpers import h


def test_handshake() -> None:
    assert encode_handshake(0, 16384) == h("00000009 01 00000000 00004000")
    assert encode_handshake(0x80000000, 16384) == h("00000009 01 80000000 00004000")


def test_handshake_with_data_v4() -> None:
    assert encode_handshake(0, 16384, b"hi") == h("0000000b 01 00000000 00004000 6869")


def test_status_and_finished_status() -> None:
    assert encode_status(0, 16384, 5) == h("0000000d 02 00000000 00004000 00000005")
    assert encode_status(1, 16384, 2, finished=True) == h("0000000d 03 00000001 00004000 00000002")


def test_data_header_and_payload() -> None:
    assert encode_data_header(0, 5) == h("00000009 04 00000000 00000005")
    assert encode_payload(b"hello") == h("00000005 68656c6c6f")
    assert encode_payload(memoryview(b"xhellox")[1:6]) == h("00000005 68656c6c6f")


def test_end_error_end_keep_alive() -> None:
    assert encode_end(0x80000000) == h("00000005 00 80000000")
    assert encode_error_end(3) == h("00000005 06 00000003")
    assert encode_keep_alive() == h("00000001 07")


def test_pre_handshake_both_forms() -> None:
    assert encode_pre_handshake(7, 100) == h("00000009 05 00000007 00000064")
    assert encode_pre_handshake(7, 100, 9) == h("0000000d 05 00000007 00000064 00000009")


def test_empty_payload_is_refused() -> None:
    with pytest.raises(UsageError):
        encode_payload(b"")


def test_read_fields() -> None:
    body = h("02 80000001 00004000 0000003e")
    assert read_fields(body, 1) == (0x80000001,)
    assert read_fields(body, 3) == (0x80000001, 16384, 62)
