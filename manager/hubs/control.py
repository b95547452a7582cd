"""The control channel's message codec (hub-protocol.md §5.2): NDJSON `[code, payload]`.

Sans-I/O: `ControlDecoder.feed(bytes)` returns the complete messages so far. Lines end with
`\\n` or `\\r\\n` (Windows Hubs); blank lines are skipped; a line that is not a JSON array
with an integer code is counted and skipped, as the Hub itself does, so one bad message
never costs the tunnel. An over-long line is dropped without being buffered whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_LINE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ControlMessage:
    code: int
    payload: Any


def encode_message(code: int, payload: Any) -> bytes:
    return json.dumps([code, payload], separators=(",", ":")).encode() + b"\n"


class ControlDecoder:
    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._max = max_line
        self._skipping = False
        self.bad_lines = 0
        self.last_error: str | None = None

    def feed(self, data: bytes) -> list[ControlMessage]:
        out: list[ControlMessage] = []
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._keep(data[start:])
                return out
            piece = data[start:nl]
            start = nl + 1
            if self._skipping:
                self._skipping = False
                self._buf.clear()
                continue
            if self._buf:
                self._buf += piece
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = piece
            msg = self._parse(line)
            if msg is not None:
                out.append(msg)

    def _keep(self, rest: bytes) -> None:
        if self._skipping or not rest:
            return
        self._buf += rest
        if len(self._buf) > self._max:
            self._buf.clear()
            self._skipping = True
            self._bad(f"line longer than {self._max} bytes")

    def _parse(self, line: bytes) -> ControlMessage | None:
        line = line.strip()
        if not line:
            return None
        try:
            value = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            self._bad(f"not JSON: {exc}")
            return None
        if (
            not isinstance(value, list)
            or not value
            or not isinstance(value[0], int)
            or isinstance(value[0], bool)
        ):
            self._bad("not a [code, payload] array")
            return None
        return ControlMessage(value[0], value[1] if len(value) > 1 else None)

    def _bad(self, why: str) -> None:
        self.bad_lines += 1
        self.last_error = why
