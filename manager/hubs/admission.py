"""Admission shaping: how many tunnel admissions do their expensive work at once.

A manager restart brings every Hub back in the same second. Admitted all at once, their key
checks (scrypt in a thread, SQL reads) and registrations (SQL writes) ran together: the pool
timed out ("QueuePool limit ... reached"), the event loop fell behind on the LOAD lines of
Hubs already in, those were closed as silent and reconnected too, and the herd never
settled. `AdmissionQueue` lets at most `limit` admissions work at once and queues the rest in
arrival order, a bounded number for a bounded time; past either bound the tunnel is turned
away with `AdmissionBusy` (a 503 with Retry-After, or close 1013), which is cheap for both
sides, and the Hub comes back after its reconnection delay.

Two classes of waiter share the slots: `first` (a new tunnel's key check) and `finishing`
(the registration of a tunnel already answered 200). Finishing waiters go first and are not
held to the queue's length or to `max_wait_s` (only to FINISHING_WAIT_S): they have cost a
key check and hold a socket, and turning one away means a closed tunnel, a reconnect and a
second key check, while a new tunnel can still be refused cheaply with a 503. Their number
stays small because they go first: only tunnels between their two halves can be waiting.

It owns counting and ordering only; it knows nothing of Hubs, SQL or metrics libraries
(`on_waited` is how the metrics see each wait). `BurstLog` says when a refusal is worth a
log line, so a storm logs a few lines, not thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterator, Callable

FINISHING_WAIT_S = 30.0  # a registration's least wait, also under a tiny MANAGER_ADMISSION_WAIT_S
QUEUE_FULL = "queue full"
WAITED_TOO_LONG = "waited too long"


class AdmissionBusy(Exception):
    """No slot for this admission: the queue is full, or it waited past its limit."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class AdmissionQueue:
    """At most `limit` holders at once; up to `max_waiting` FIFO waiters, each for at most
    `max_wait_s`. A released slot passes straight to the next waiter, so a newcomer cannot
    overtake the queue."""

    def __init__(self, limit: int, max_waiting: int, max_wait_s: float) -> None:
        self.limit = max(1, limit)
        self.max_waiting = max(0, max_waiting)
        self.max_wait_s = max_wait_s
        self.running = 0
        self.peak_running = 0  # high-water marks, for tests and benchmarks
        self.peak_waiting = 0
        self.on_waited: Callable[[float], None] | None = None  # seconds each grant waited
        self._first: deque[asyncio.Future[None]] = deque()
        self._finishing: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._first) + len(self._finishing)

    async def enter(self, *, finishing: bool = False) -> AdmissionSlot:
        """A slot, once it is this admission's turn; AdmissionBusy instead of waiting past the
        bounds. The caller gives it back on every path (`release`, or `slot()` does it)."""
        await self._acquire(finishing)
        return AdmissionSlot(self._release)

    @contextlib.asynccontextmanager
    async def slot(self, *, finishing: bool = False) -> AsyncIterator[AdmissionSlot]:
        """`enter` for the length of a block, however the block ends (error, cancellation)."""
        held = await self.enter(finishing=finishing)
        try:
            yield held
        finally:
            held.release()

    async def _acquire(self, finishing: bool) -> None:
        if self.running < self.limit and not self.waiting:
            self._grant(0.0)
            return
        if not finishing and len(self._first) >= self.max_waiting:
            raise AdmissionBusy(QUEUE_FULL)
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        line = self._finishing if finishing else self._first
        line.append(turn)
        self.peak_waiting = max(self.peak_waiting, self.waiting)
        began = loop.time()
        limit = max(self.max_wait_s, FINISHING_WAIT_S) if finishing else self.max_wait_s
        try:
            async with asyncio.timeout(limit if self.max_wait_s > 0 else None):
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._release()  # granted just as the wait ended: pass the slot on
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    line.remove(turn)
            if isinstance(exc, TimeoutError):
                raise AdmissionBusy(WAITED_TOO_LONG) from None
            raise
        self._observe(loop.time() - began)

    def _grant(self, waited: float) -> None:
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        self._observe(waited)

    def _observe(self, waited: float) -> None:
        if self.on_waited is not None:
            self.on_waited(waited)

    def _release(self) -> None:
        for line in (self._finishing, self._first):
            while line:
                turn = line.popleft()
                if not turn.done():
                    turn.set_result(None)  # the slot changes hands; `running` stays
                    return
        self.running -= 1


class AdmissionSlot:
    """One admission's slot; giving it back twice is harmless, so every path can."""

    __slots__ = ("_give_back",)

    def __init__(self, give_back: Callable[[], None]) -> None:
        self._give_back: Callable[[], None] | None = give_back

    def release(self) -> None:
        give_back, self._give_back = self._give_back, None
        if give_back is not None:
            give_back()


class BurstLog:
    """When a repeated event deserves a log line: the first of a burst, then at most one
    every `every_s` seconds, each saying how many happened since the last line."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last = -math.inf
        self._unlogged = 0

    def event(self, now: float) -> int:
        """Count one event at `now`; how many to report now (0: stay quiet)."""
        self._unlogged += 1
        if now - self._last < self.every_s:
            return 0
        self._last = now
        count, self._unlogged = self._unlogged, 0
        return count
