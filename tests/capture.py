"""Reads the recorded STH 1.0.1 session as per-direction byte streams.

The session is vendored in tests/captures (a copy of ../shared/captures; README.md there says
where it comes from), so the tests that read it always run."""

from __future__ import annotations

import json
from pathlib import Path

CAPTURE = Path(__file__).resolve().parent / "captures" / "sth-1.0.1-session.jsonl"


def capture_streams() -> dict[str, bytes]:
    out: dict[str, bytearray] = {}
    for line in CAPTURE.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.setdefault(rec["dir"], bytearray()).extend(bytes.fromhex(rec["hex"]))
    return {k: bytes(v) for k, v in out.items()}


def split_head(stream: bytes) -> tuple[bytes, bytes]:
    """(HTTP head incl. the blank line, the BPMux bytes after it)."""
    end = stream.index(b"\r\n\r\n") + 4
    return stream[:end], stream[end:]
