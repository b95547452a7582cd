"""Things every replica must act on at once, whichever replica they happened on: a key
revoked, a Hub disconnected or deleted. PostgreSQL's LISTEN/NOTIFY carries them; with SQLite
(one process) they are handed to the handlers directly.

Delivery is at most once (a replica whose listening connection is down misses what is sent
meanwhile), so each event also has a slower path that does not depend on it: revoked keys
are found by the supervisor's sweep, and a Hub that is not dropped stays listed as
connected, which the caller that asked for the drop sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

log = logging.getLogger("manager.replicas")

CHANNEL = "manager_events"
RECONNECT_S = 2.0
Handler = Callable[[dict[str, Any]], Awaitable[None]]


class Events:
    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.shared = url.get_backend_name() == "postgresql"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._handlers: dict[str, Handler] = {}
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._send = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()
        self._origin = secrets.token_hex(8)  # our own notifications come back: skip them

    def on(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    async def publish(self, kind: str, **data: Any) -> None:
        """Tell every replica: this one at once, the others through PostgreSQL."""
        await self._dispatch({"kind": kind, **data})
        if not self.shared:
            return
        payload = json.dumps({"kind": kind, "from": self._origin, **data})
        async with self._send:
            conn = await self._connection()
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def start(self) -> None:
        if self.shared:
            self._task = asyncio.get_running_loop().create_task(self._keep_listening())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(self._dsn, timeout=10)
            await conn.add_listener(CHANNEL, self._received)
            self._conn = conn
        return self._conn

    async def _keep_listening(self) -> None:
        while True:
            try:
                async with self._send:
                    await self._connection()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("event listener: cannot reach PostgreSQL: %s", exc)
            await asyncio.sleep(RECONNECT_S)

    def _received(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            return
        if isinstance(event, dict) and event.get("from") != self._origin:
            task = asyncio.get_running_loop().create_task(self._dispatch(event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _dispatch(self, event: dict[str, Any]) -> None:
        handler = self._handlers.get(str(event.get("kind")))
        if handler is None:
            return
        try:
            await handler(event)
        except Exception as exc:  # one bad event must not stop the others
            log.warning("event %s failed: %r", event.get("kind"), exc)
