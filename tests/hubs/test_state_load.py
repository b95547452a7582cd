"""A Hub's LOAD figures are refreshed in place (manager/hubs/state.py `_refresh`): the same
dict and list objects carry each new LOAD, so 10,000 Hubs do not hand the garbage collector
two fresh long-lived objects each per LOAD; what they hold is exactly the latest LOAD."""

from __future__ import annotations

import gc

from manager.hubs.state import LOAD, HubState


def figures(**kw: object) -> dict[str, object]:
    return {
        "msgCode": LOAD,
        "avgLoad": 0.5,
        "currentLoad": 0.25,
        "memFree": 100,
        "memUsed": 50,
        "fsSize": [{"fs": "/", "available": 9, "size": 10, "used": 1, "use": 0.1}],
        **kw,
    }


def test_each_load_replaces_the_figures_in_the_same_objects():
    state = HubState("h")
    assert state.apply(LOAD, figures())
    kept, disks = state.load, state.load and state.load["fsSize"]
    second = figures(
        avgLoad=0.75,
        fsSize=[{"fs": "/", "available": 8, "size": 10, "used": 2, "use": 0.2}, {"fs": "/data"}],
    )
    del second["memUsed"]  # a figure the Hub no longer sends is gone, not stale
    assert state.apply(LOAD, second)
    assert state.load is kept and state.load["fsSize"] is disks
    assert state.load == {k: v for k, v in second.items() if k != "msgCode"}
    assert not any(gc.is_tracked(entry) for entry in state.load["fsSize"])


def test_a_figure_changing_shape_is_taken_as_sent():
    state = HubState("h")
    state.apply(LOAD, figures())
    state.apply(LOAD, figures(fsSize="n/a", extra=[1, 2]))
    assert state.load == {
        k: v for k, v in figures(fsSize="n/a", extra=[1, 2]).items() if k != "msgCode"
    }
    state.apply(LOAD, figures(fsSize=[], extra=[3]))
    assert state.load is not None and state.load["fsSize"] == [] and state.load["extra"] == [3]
    assert not state.apply(LOAD, ["not", "a", "dict"])  # refused; the figures stay
    assert state.load["extra"] == [3]
