"""The proxy's wait for a Hub's topic announcement (manager/hubs/announcements.py)."""

from __future__ import annotations

import asyncio

from manager.hubs.announcements import TopicAnnouncements


async def test_an_announcement_releases_only_its_own_topic():
    board = TopicAnnouncements()
    orders = board.expect("orders")
    prices = board.expect("prices")
    board.received({"requires": "orders", "topicName": "orders", "status": "add"})
    board.received({"provides": "orders", "topicName": "orders", "status": "remove"})
    board.received({"provides": "other", "status": "add"})
    board.received(["not", "a", "dict"])
    assert not orders.future.done() and not prices.future.done()
    board.received({"provides": "orders", "topicName": "orders", "status": "add"})
    assert await orders.wait(1.0) is True
    assert not prices.future.done()
    assert len(board) == 1


async def test_no_announcement_times_out_and_leaves_nothing_behind():
    board = TopicAnnouncements()
    waiting = board.expect("orders")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await waiting.wait(0.05) is False
    assert 0.04 <= loop.time() - t0 < 1.0
    assert len(board) == 0
    board.received({"provides": "orders", "status": "add"})  # late: harmless


async def test_a_cancelled_wait_is_unregistered():
    board = TopicAnnouncements()
    waiting = board.expect("orders")
    task = asyncio.ensure_future(waiting.wait(10))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(board) == 0
