"""The drain's schedule: tunnel closes spread evenly over the window, never all at once."""

from __future__ import annotations

import pytest

from manager.services.drain import spread


def test_closes_are_spread_evenly_over_the_window():
    assert spread(4, 10.0) == [0.0, 2.5, 5.0, 7.5]
    assert spread(1, 10.0) == [0.0]


@pytest.mark.parametrize("count", [0, -1])
def test_nothing_to_close(count: int):
    assert spread(count, 10.0) == []


def test_a_zero_window_closes_at_once():
    assert spread(3, 0.0) == [0.0, 0.0, 0.0]
