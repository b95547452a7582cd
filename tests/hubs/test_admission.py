"""The admission queue: bound, FIFO order, wait and length limits, slots back on every path."""

from __future__ import annotations

import asyncio

import pytest

from manager.hubs.admission import (
    QUEUE_FULL,
    WAITED_TOO_LONG,
    AdmissionBusy,
    AdmissionQueue,
    BurstLog,
)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_limit_hold_slots_and_the_rest_go_in_arrival_order():
    queue = AdmissionQueue(limit=2, max_waiting=100, max_wait_s=5)
    waits: list[float] = []
    queue.on_waited = waits.append
    order: list[int] = []
    gates = [asyncio.Event() for _ in range(8)]
    holding = 0
    most = 0

    async def admission(i: int) -> None:
        nonlocal holding, most
        async with queue.slot():
            holding += 1
            most = max(most, holding)
            order.append(i)
            await gates[i].wait()
            holding -= 1

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(admission(i)))
        await settle()  # arrivals in index order
    assert order == [0, 1]
    assert (queue.running, queue.waiting) == (2, 6)
    for i in (1, 0, 3, 2, 5, 4, 7, 6):  # finish out of order: grants still go in FIFO order
        gates[i].set()
        await settle()
    await asyncio.gather(*tasks)
    assert order == list(range(8))
    assert most == 2
    assert (queue.running, queue.waiting, queue.peak_running, queue.peak_waiting) == (0, 0, 2, 6)
    assert len(waits) == 8 and waits[:2] == [0.0, 0.0] and all(w > 0 for w in waits[2:])


async def test_a_newcomer_does_not_overtake_waiters_when_a_slot_frees():
    queue = AdmissionQueue(limit=1, max_waiting=10, max_wait_s=5)
    first = await queue.enter()
    waiter = asyncio.create_task(queue.enter())
    await settle()
    first.release()  # the slot goes to the waiter, not to whoever asks next
    newcomer = asyncio.create_task(queue.enter())
    await settle()
    assert waiter.done() and not newcomer.done()
    assert queue.running == 1
    (await waiter).release()
    (await newcomer).release()
    assert queue.running == 0


async def test_finishing_admissions_go_before_new_ones():
    queue = AdmissionQueue(limit=1, max_waiting=10, max_wait_s=5)
    held = await queue.enter()
    new = asyncio.create_task(queue.enter())
    await settle()
    finishing = asyncio.create_task(queue.enter(finishing=True))
    await settle()
    held.release()
    await settle()
    assert finishing.done() and not new.done()
    (await finishing).release()
    (await new).release()


async def test_a_full_queue_refuses_at_once():
    queue = AdmissionQueue(limit=1, max_waiting=2, max_wait_s=5)
    held = await queue.enter()
    waiters = [asyncio.create_task(queue.enter()) for _ in range(2)]
    await settle()
    with pytest.raises(AdmissionBusy) as refused:
        await queue.enter()
    assert refused.value.why == QUEUE_FULL
    # a finishing admission (already answered 200) is never refused for the length
    finishing = asyncio.create_task(queue.enter(finishing=True))
    await settle()
    assert queue.waiting == 3
    held.release()
    for task in (finishing, *waiters):
        (await task).release()
    assert (queue.running, queue.waiting) == (0, 0)


async def test_a_waiter_past_its_time_is_refused_and_leaves_the_queue():
    queue = AdmissionQueue(limit=1, max_waiting=10, max_wait_s=0.05)
    held = await queue.enter()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(AdmissionBusy) as refused:
        await queue.enter()
    assert refused.value.why == WAITED_TOO_LONG
    assert 0.04 < loop.time() - t0 < 1.0
    assert queue.waiting == 0
    held.release()
    assert queue.running == 0
    async with queue.slot():  # the slot is free again, not lost to the one that gave up
        assert queue.running == 1
    assert queue.running == 0


@pytest.mark.parametrize(
    ("max_wait_s", "finishing"),
    [
        (0.02, True),  # a registration (after the 200) is not held to a short wait limit
        (0, False),  # 0: no time limit at all
    ],
)
async def test_waits_that_have_no_short_limit(max_wait_s: float, finishing: bool):
    queue = AdmissionQueue(limit=1, max_waiting=10, max_wait_s=max_wait_s)
    held = await queue.enter()
    waiter = asyncio.create_task(queue.enter(finishing=finishing))
    await asyncio.sleep(0.1)  # five times 0.02 s
    assert not waiter.done()
    held.release()
    (await waiter).release()
    assert queue.running == 0


async def test_cancelled_waiters_and_holders_give_everything_back():
    queue = AdmissionQueue(limit=1, max_waiting=10, max_wait_s=5)
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with queue.slot():
            entered.set()
            await asyncio.Event().wait()

    holder = asyncio.create_task(hold_forever())
    await entered.wait()
    waiter = asyncio.create_task(queue.enter())
    await settle()
    assert queue.waiting == 1
    waiter.cancel()  # e.g. the Hub's socket closed while it waited
    await settle()
    assert waiter.cancelled() and queue.waiting == 0
    holder.cancel()
    await settle()
    assert holder.cancelled() and queue.running == 0


async def test_a_slot_granted_as_its_waiter_is_cancelled_passes_on():
    queue = AdmissionQueue(limit=1, max_waiting=10, max_wait_s=5)
    held = await queue.enter()
    doomed = asyncio.create_task(queue.enter())
    after = asyncio.create_task(queue.enter())
    await settle()
    held.release()  # grants `doomed`'s turn, which has not run yet ...
    doomed.cancel()  # ... and is cancelled before it does
    await settle()
    assert doomed.cancelled()
    assert after.done()
    assert queue.running == 1
    (await after).release()
    assert (queue.running, queue.waiting) == (0, 0)


async def test_releasing_twice_is_harmless():
    queue = AdmissionQueue(limit=2, max_waiting=10, max_wait_s=5)
    slot = await queue.enter()
    other = await queue.enter()
    slot.release()
    slot.release()
    assert queue.running == 1
    other.release()
    assert queue.running == 0


def test_burst_log_reports_the_first_then_counts_per_interval():
    burst = BurstLog(every_s=10)
    assert burst.event(100.0) == 1
    assert [burst.event(100.0 + i) for i in range(1, 10)] == [0] * 9
    assert burst.event(110.0) == 10  # the 9 quiet ones and this one
    assert burst.event(111.0) == 0
    assert burst.event(500.0) == 2
