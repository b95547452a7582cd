"""Whether this replica should get traffic: a list of named checks behind `/readyz`.

A load balancer or Kubernetes asks often and without credentials, so the answer says only
which checks failed, by name; why (an error text, a host name) goes to the log, once per
change. Checks are registered by name (`add("lease", callable)`), so a new condition (the
replica lease, say) is one line where the thing it checks is built. A slow check is a
failed one (`CHECK_TIMEOUT_S`), and a check may keep its result a moment (`cache_s`) so a
flood of probes costs the database one query a second, not one each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from manager.db.engine import describe_error

log = logging.getLogger("manager.readiness")

CHECK_TIMEOUT_S = 2.0

Check = Callable[[], Awaitable[bool]]


@dataclass(slots=True)
class _Entry:
    check: Check
    cache_s: float
    ok: bool | None = None  # the last result; None before the first
    at: float = 0.0


class Readiness:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._checks: dict[str, _Entry] = {}
        self._clock = clock

    def add(self, name: str, check: Check, *, cache_s: float = 0.0) -> None:
        """Register a check: an async callable answering True when it is fine. Raising or
        taking longer than CHECK_TIMEOUT_S counts as False."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = _Entry(check, cache_s)

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def failing(self) -> list[str]:
        """The names of the checks that fail now, in registration order."""
        entries = list(self._checks.items())
        results = await asyncio.gather(*(self._run(name, e) for name, e in entries))
        return [name for (name, _), ok in zip(entries, results, strict=True) if not ok]

    async def _run(self, name: str, entry: _Entry) -> bool:
        now = self._clock()
        if entry.ok is not None and entry.cache_s and now - entry.at < entry.cache_s:
            return entry.ok
        why = ""
        try:
            ok = bool(await asyncio.wait_for(entry.check(), CHECK_TIMEOUT_S))
        except TimeoutError:
            ok, why = False, f"no answer in {CHECK_TIMEOUT_S:g} s"
        except Exception as exc:
            ok, why = False, describe_error(exc)
        if not ok and entry.ok is not False:
            log.warning("readiness check %s fails%s", name, f": {why}" if why else "")
        elif ok and entry.ok is False:
            log.info("readiness check %s passes again", name)
        entry.ok, entry.at = ok, self._clock()
        return ok


def database_check(engine: AsyncEngine) -> Check:
    """The database answers a trivial query."""

    async def check() -> bool:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    return check
