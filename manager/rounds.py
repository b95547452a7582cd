"""Periodic loops that stop between rounds, not in the middle of one.

A round cancelled in the middle of a database write (the lease renewal, the LOAD flush)
left SQLAlchemy tearing its connection down while SQLite's write lock was still held by
it, and the next writer (the lease's goodbye at shutdown) waited on that lock for its whole
busy timeout: shutdowns that hung (seen in CI and at 3,000 Hubs). So stopping sets an event
the loop waits on, the round in progress finishes, and only a round that overruns the
grace is cancelled. A leaf: imports nothing of ours.
"""

from __future__ import annotations

import asyncio
import contextlib

STOP_GRACE_S = 5.0


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless asked to stop first; whether to run another round."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return not stopping.is_set()


async def stop(task: asyncio.Task[None] | None, stopping: asyncio.Event) -> None:
    """Ask the loop to stop, let its round finish (at most STOP_GRACE_S), then it is gone."""
    stopping.set()
    if task is None:
        return
    done, _ = await asyncio.wait({task}, timeout=STOP_GRACE_S)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
