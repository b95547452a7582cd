"""A transport wrapper that sends everything written in one loop iteration with one syscall.

uvicorn writes a response's head, each body chunk and the chunked terminator with a
`transport.write` each, and asyncio sends each at once: three `send` calls for a small
proxied answer. Profiled under `wrk`, those syscalls were the largest single cost of a
proxied GET. Deferring to the end of the iteration (as `TunnelSession.flush` does for
frames) joins them; nothing waits longer than the rest of the current iteration.
"""

from __future__ import annotations

import asyncio
from typing import Any


class BatchedWrites:
    """Delegates to `transport`, except that writes are joined until the loop turns."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(data if type(data) is bytes else bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending:
            pending, self._pending = self._pending, []
            if not self.transport.is_closing():
                self.transport.write(b"".join(pending) if len(pending) > 1 else pending[0])

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def close(self) -> None:
        self.flush()  # a response written just before the close still goes out
        self.transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
