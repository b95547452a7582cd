"""Back-off with full jitter, and which endings are final."""

from __future__ import annotations

import pytest

from manager.connector.policy import Backoff, close_verdict


def test_exponential_to_the_cap_with_full_jitter():
    top = Backoff(base=1, cap=60, rand=lambda: 1.0)
    assert [top.next_delay() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    low = Backoff(base=1, cap=60, rand=lambda: 0.0)
    assert [low.next_delay() for _ in range(3)] == [0, 0, 0]  # full jitter reaches zero
    half = Backoff(base=1, cap=60, rand=lambda: 0.5)
    assert [half.next_delay() for _ in range(3)] == [0.5, 1, 2]


def test_real_jitter_stays_in_bounds():
    b = Backoff()
    for n in range(40):
        ceiling = b.ceiling()
        assert ceiling == min(60, 2**n)
        assert 0 <= b.next_delay() <= ceiling


def test_a_long_lived_connection_resets_the_count():
    b = Backoff(rand=lambda: 1.0)
    for _ in range(5):
        b.next_delay(connected_for=None)
    assert b.next_delay(connected_for=10) == 32  # short-lived: keeps growing
    assert b.next_delay(connected_for=61) == 1  # lived > 60 s: start over


@pytest.mark.parametrize(
    ("code", "stop"),
    [
        (4403, True),
        (4401, True),
        (4409, True),
        (4413, True),
        (4429, False),
        (1000, False),
        (1002, False),
        (1006, False),
        (None, False),
    ],
)
def test_close_verdicts(code: int | None, stop: bool):
    verdict, words = close_verdict(code, "why")
    assert verdict is stop
    if code is not None and code >= 4000:
        assert str(code) in words
