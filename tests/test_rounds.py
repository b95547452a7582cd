"""Periodic loops stop between rounds: a round in progress (a database write) finishes."""

from __future__ import annotations

import asyncio

from manager import rounds


async def test_stop_lets_the_round_in_progress_finish_and_cancels_only_an_overrun(monkeypatch):
    stopping = asyncio.Event()
    finished: list[int] = []

    async def loop(round_s: float) -> None:
        n = 0
        while await rounds.pause(stopping, 0.01):
            await asyncio.sleep(round_s)  # the round: a write that must not be cut
            n += 1
            finished.append(n)

    task = asyncio.create_task(loop(0.2))
    await asyncio.sleep(0.05)  # inside the first round
    await rounds.stop(task, stopping)
    assert task.done() and not task.cancelled() and finished == [1]

    monkeypatch.setattr(rounds, "STOP_GRACE_S", 0.05)
    stopping.clear()
    task = asyncio.create_task(loop(10.0))
    await asyncio.sleep(0.05)
    await rounds.stop(task, stopping)
    assert task.cancelled() and finished == [1]
