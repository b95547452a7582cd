"""ControlFeed: Hub API snapshots (0.18 and current shapes) → the control messages a joined
Hub sends, in a Hub's order, and the events between two polls."""

from __future__ import annotations

import pytest

from manager.connector.errors import LocalHubError
from manager.connector.feed import ControlFeed, HubSnapshot
from manager.hubs.state import HubState

CONFIG = {"type": "process", "name": "hello-seq", "id": "s1", "entrypointPath": "index.js"}
SEQ_018 = {"id": "s1", "config": CONFIG, "instances": ["i1"]}
INST_018 = {"id": "i1", "sequence": "s1"}  # 0.18.7's /instances: sequence is a bare id


def snap(sequences=(), instances=(), topics=()) -> HubSnapshot:
    return HubSnapshot.from_api(list(sequences), list(instances), list(topics))


def test_opening_snapshot_in_a_hubs_order():
    feed = ControlFeed("hub-1")
    topic = {"contentType": "text/plain", "localProvider": "", "topic": "t", "topicName": "t"}
    out = feed.update(snap([SEQ_018], [INST_018], [topic]))
    assert [code for code, _ in out] == [7004, 7003, 7007]
    assert out[0][1] == {
        "sequences": [
            {"id": "s1", "config": CONFIG, "instances": ["i1"], "location": "hub-1", "status": 0}
        ]
    }
    (instance,) = out[1][1]["instances"]
    assert instance["sequence"] == {"id": "s1", "config": CONFIG, "location": "hub-1"}
    assert out[2][1] == dict(topic, status="add")


def test_load_and_network_info():
    feed = ControlFeed("h")
    code, payload = feed.load({"avgLoad": 1, "currentLoad": 2, "memFree": 3, "memUsed": 4})
    assert code == 7001 and payload["msgCode"] == 7001 and payload["memFree"] == 3
    assert feed.network_info([{"iface": "lo"}]) == (7002, [{"iface": "lo"}])
    with pytest.raises(LocalHubError):
        feed.load([1, 2])


def test_events_between_polls():
    feed = ControlFeed("hub-1")
    assert feed.update(snap()) == [(7004, {"sequences": []}), (7003, {"instances": []})]
    assert feed.update(snap()) == []  # nothing changed: nothing sent

    added = feed.update(snap([SEQ_018]))
    assert added == [(7006, {"id": "s1", "status": 0, "config": CONFIG})]

    started = feed.update(snap([SEQ_018], [INST_018]))
    assert started == [
        (
            7005,
            {
                "instance": {
                    "id": "i1",
                    "sequence": {"id": "s1", "config": CONFIG, "location": "hub-1"},
                }
            },
        )
    ]

    ended = feed.update(snap([SEQ_018]))
    assert ended == [
        (
            7005,
            {
                "instance": {
                    "id": "i1",
                    "status": "gone",
                    "sequence": {"id": "s1", "config": CONFIG, "location": "hub-1"},
                }
            },
        )
    ]

    removed = feed.update(snap())
    assert removed == [
        (
            7006,
            {
                "id": "s1",
                "status": 1,
                "config": {**SEQ_018, "location": "hub-1"},
            },
        )
    ]


def test_status_changes_and_topics():
    feed = ControlFeed("h")
    running = {"id": "i1", "sequence": {"id": "s1"}, "status": "running"}
    feed.update(snap([SEQ_018], [running], ["t1"]))
    out = feed.update(snap([SEQ_018], [dict(running, status="completed")], ["t2"]))
    assert out[0][0] == 7005 and out[0][1]["instance"]["status"] == "completed"
    assert out[1] == (
        7007,
        {
            "contentType": "application/x-ndjson",
            "localProvider": "",
            "topic": "t2",
            "topicName": "t2",
            "status": "add",
        },
    )
    assert out[2] == (7007, {"topicName": "t1", "status": "remove"})


def test_reset_sends_the_whole_snapshot_again():
    feed = ControlFeed("h")
    feed.update(snap([SEQ_018]))
    feed.reset()
    assert [code for code, _ in feed.update(snap([SEQ_018]))] == [7004, 7003]


def test_location_follows_an_assigned_id():
    feed = ControlFeed("")
    assert feed.update(snap([SEQ_018]))[0][1]["sequences"][0]["location"] == "STH"
    feed.hub_id = "assigned"
    feed.reset()
    assert feed.update(snap([SEQ_018]))[0][1]["sequences"][0]["location"] == "assigned"


@pytest.mark.parametrize(
    "args",
    [
        ({"not": "a list"}, [], []),
        ([], "text", []),
        ([{"config": {}}], [], []),
        ([], [{"sequence": "x"}], []),
        ([], [], [{"contentType": "text/plain"}]),
    ],
)
def test_garbage_is_a_local_hub_error(args):
    with pytest.raises(LocalHubError):
        HubSnapshot.from_api(*args)


def test_the_managers_view_matches_the_hubs():
    """Feed the messages into the manager's own HubState: what it shows is what the Hub has."""
    feed, state = ControlFeed("h"), HubState("h")
    polls = [
        snap([SEQ_018], []),
        snap([SEQ_018], [INST_018]),
        snap([SEQ_018, {"id": "s2", "config": {}}], [INST_018]),
        snap([{"id": "s2", "config": {}}], []),
    ]
    for poll in polls:
        for code, payload in feed.update(poll):
            assert state.apply(code, payload)
        assert set(state.sequences) == set(poll.sequences)
        assert set(state.instances) == set(poll.instances)
    assert state.sequences["s2"]["instances"] == []


def test_instances_that_provide_or_require_topics_announce_them():
    feed, state = ControlFeed("h"), HubState("h")
    producer = {"id": "p", "sequence": {"id": "s1"}, "provides": "names", "requires": ""}
    consumer = {"id": "c", "sequence": {"id": "s1"}, "requires": "names"}
    topic = {"topicName": "names", "contentType": "text/plain"}
    out = feed.update(snap([SEQ_018], [producer], [topic]))
    out += feed.update(snap([SEQ_018], [producer, consumer], [topic]))
    claims = [payload for code, payload in out if code == 7007 and payload.get("status") == "add"]
    assert {"provides": "names", "topicName": "names", "contentType": "text/plain",
            "status": "add", "localProvider": "p"} in claims  # fmt: skip
    assert {"requires": "names", "topicName": "names", "contentType": "text/plain",
            "status": "add"} in claims  # fmt: skip
    for code, payload in out:
        state.apply(code, payload)
    info = state.topics["names"]
    assert info.provides and info.requires and info.local_provider == "p"
    assert feed.update(snap([SEQ_018], [producer, consumer], [topic])) == []  # said once
