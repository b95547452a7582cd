"""Concurrent access-key creates in one Space: each gets its own id, the limit holds.

The id (`created`, in ms) is read-then-written, so without a lock two creates in the same
millisecond took the same one and the second failed with a 500 (seen in CI on SQLite, whose
driver only starts a transaction at the first write).
"""

from __future__ import annotations

import asyncio

from manager.services.access_keys import MAX_LIVE_KEYS
from manager.services.context import Services
from manager.services.errors import Conflict
from tests.conftest import World


async def test_concurrent_creates_get_distinct_ids(svc: Services, world: World) -> None:
    async def create(n: int) -> int | None:
        try:
            async with svc.sessions() as s, s.begin():
                made = await svc.keys.create(s, world.space_id, f"key {n}")
        except Conflict:  # over the limit: a clear refusal, never a 500
            return None
        return made.created_ms

    results = await asyncio.gather(*(create(n) for n in range(MAX_LIVE_KEYS + 3)))
    made = [r for r in results if r is not None]
    assert len(made) == MAX_LIVE_KEYS and len(set(made)) == MAX_LIVE_KEYS
    async with svc.sessions() as s:
        listed = await svc.keys.list_keys(s, world.space_id)
    assert sorted(int(str(k["created"])) for k in listed) == sorted(made)
