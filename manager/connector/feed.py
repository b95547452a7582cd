"""Turns what the local Hub's REST API shows into the control messages a joined Hub sends.

A Hub that is not joined to any platform never writes control messages, so the connector
polls its API and *derives* them: on a new control channel the snapshot a real Hub sends
(LOAD, NETWORK_INFO, SEQUENCES, INSTANCES, one TOPIC per topic, hub-protocol.md §5.5), then
SEQUENCE / INSTANCE / TOPIC events for whatever changed between two polls. Hub API answers
are normalised here, once, so 0.18-era shapes (an instance's `sequence` given as a bare id)
reach the manager in the current form. Sans-I/O: values in, `(code, payload)` out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from manager.connector.errors import LocalHubError
from manager.hubs.state import (
    INSTANCE,
    INSTANCES,
    LOAD,
    NETWORK_INFO,
    SEQUENCE,
    SEQUENCES,
    TOPIC,
)

__all__ = ["ControlFeed", "HubSnapshot", "Message"]

Message = tuple[int, Any]
Record = dict[str, Any]
DEFAULT_TOPIC_TYPE = "application/x-ndjson"
UNKNOWN_LOCATION = "STH"  # what a Hub without an id writes as a Sequence's location


@dataclass(frozen=True)
class HubSnapshot:
    """One poll of the Hub's `/sequences`, `/instances` and `/topics`, keyed by id."""

    sequences: dict[str, Record] = field(default_factory=dict)
    instances: dict[str, Record] = field(default_factory=dict)
    topics: dict[str, Record] = field(default_factory=dict)

    @classmethod
    def from_api(cls, sequences: Any, instances: Any, topics: Any) -> HubSnapshot:
        """Validate and normalise the three answers; garbage raises LocalHubError."""
        return cls(
            sequences=_keyed(sequences, "/sequences", _sequence, "id"),
            instances=_keyed(instances, "/instances", _instance, "id"),
            topics=_keyed(topics, "/topics", _topic, "topicName"),
        )


def _keyed(
    raw: Any, what: str, normalise: Callable[[Any], Record | None], key: str
) -> dict[str, Record]:
    if not isinstance(raw, list):
        raise LocalHubError(f"GET {what} did not answer a JSON array")
    out: dict[str, Record] = {}
    for item in raw:
        record = normalise(item)
        if record is None:
            raise LocalHubError(f"GET {what} listed an entry without an id: {str(item)[:100]}")
        out[record[key]] = record
    return out


def _sequence(item: Any) -> Record | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    config = item.get("config")
    record: Record = {
        "id": item["id"],
        "config": config if isinstance(config, dict) else {},
        "instances": [i for i in item.get("instances") or [] if isinstance(i, str)],
    }
    for optional in ("name", "location"):
        if isinstance(item.get(optional), str):
            record[optional] = item[optional]
    return record


def _instance(item: Any) -> Record | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    record = dict(item)
    seq = record.get("sequence")
    if isinstance(seq, str):  # 0.18 Hubs name the Sequence by id only
        record["sequence"] = {"id": seq}
    elif not isinstance(seq, dict):
        record.pop("sequence", None)
    return record


def _topic(item: Any) -> Record | None:
    if isinstance(item, str):
        item = {"topicName": item}
    if not isinstance(item, dict):
        return None
    name = item.get("topicName") or item.get("topic") or item.get("id")
    if not isinstance(name, str) or not name:
        return None
    ctype = item.get("contentType")
    provider = item.get("localProvider")
    return {
        "contentType": ctype if isinstance(ctype, str) and ctype else DEFAULT_TOPIC_TYPE,
        "localProvider": provider if isinstance(provider, str) else "",
        "topic": name,
        "topicName": name,
    }


class ControlFeed:
    """The messages for one control channel at a time; `reset` when a new one opens."""

    def __init__(self, hub_id: str = "") -> None:
        self.hub_id = hub_id
        self._last: HubSnapshot | None = None

    @property
    def location(self) -> str:
        return self.hub_id or UNKNOWN_LOCATION

    def reset(self) -> None:
        """A new control channel: the next snapshot goes out whole (nothing is queued
        across channels, exactly like a Hub)."""
        self._last = None

    def load(self, load_check: Any) -> Message:
        """LOAD from the Hub's `GET /load-check` answer."""
        if not isinstance(load_check, dict):
            raise LocalHubError("GET /load-check did not answer a JSON object")
        body = {k: v for k, v in load_check.items() if k != "msgCode"}
        return LOAD, {"msgCode": LOAD, **body}

    def network_info(self, interfaces: list[dict[str, Any]]) -> Message:
        return NETWORK_INFO, interfaces

    def update(self, snapshot: HubSnapshot) -> list[Message]:
        """The whole snapshot after a reset, else the events since the previous poll."""
        previous, self._last = self._last, snapshot
        if previous is None:
            return self._snapshot(snapshot)
        return self._diff(previous, snapshot)

    # snapshot messages

    def _snapshot(self, snap: HubSnapshot) -> list[Message]:
        sequences = [dict(seq, location=self.location, status=0) for seq in snap.sequences.values()]
        instances = [self._instance(inst, snap) for inst in snap.instances.values()]
        out: list[Message] = [
            (SEQUENCES, {"sequences": sequences}),
            (INSTANCES, {"instances": instances}),
        ]
        out += [(TOPIC, dict(topic, status="add")) for topic in snap.topics.values()]
        for inst in snap.instances.values():
            out += _topic_claims(inst, snap)
        return out

    def _instance(self, inst: Record, snap: HubSnapshot) -> Record:
        """An instance with its `sequence` completed from the Sequence list when the Hub
        only gave the id (the manager shows config and location from it)."""
        seq = inst.get("sequence")
        if not isinstance(seq, dict) or not isinstance(seq.get("id"), str):
            return inst
        known = snap.sequences.get(seq["id"])
        full = dict(seq)
        if known is not None:
            full.setdefault("config", known["config"])
        full.setdefault("location", self.location)
        return dict(inst, sequence=full)

    # events between two polls

    def _diff(self, old: HubSnapshot, new: HubSnapshot) -> list[Message]:
        out: list[Message] = []
        for sid, seq in new.sequences.items():
            before = old.sequences.get(sid)
            if before is None or before["config"] != seq["config"]:
                out.append((SEQUENCE, {"id": sid, "status": 0, "config": seq["config"]}))
        for iid, inst in new.instances.items():
            before = old.instances.get(iid)
            if before is None or before.get("status") != inst.get("status"):
                out.append((INSTANCE, {"instance": self._instance(inst, new)}))
            if before is None:
                out += _topic_claims(inst, new)
        for iid, inst in old.instances.items():
            if iid not in new.instances:
                gone = {"id": iid, "status": "gone"}
                if "sequence" in inst:
                    gone["sequence"] = self._instance(inst, old)["sequence"]
                out.append((INSTANCE, {"instance": gone}))
        for sid, seq in old.sequences.items():
            if sid not in new.sequences:
                record = dict(seq, location=self.location)
                out.append((SEQUENCE, {"id": sid, "status": 1, "config": record}))
        for name, topic in new.topics.items():
            if old.topics.get(name) != topic:
                out.append((TOPIC, dict(topic, status="add")))
        for name in old.topics:
            if name not in new.topics:
                out.append((TOPIC, {"topicName": name, "status": "remove"}))
        return out


def _topic_claims(inst: Record, snap: HubSnapshot) -> list[Message]:
    """TOPIC `provides` / `requires` for an instance that declares them, as a Hub announces
    them when the instance starts: the manager routes topics between Hubs by these, and the
    Hub's `/topics` list alone does not say who requires what."""
    out: list[Message] = []
    for role in ("provides", "requires"):
        name = inst.get(role)
        if not isinstance(name, str) or not name:
            continue
        known = snap.topics.get(name)
        ctype = known["contentType"] if known else DEFAULT_TOPIC_TYPE
        claim: Record = {role: name, "topicName": name, "contentType": ctype, "status": "add"}
        if role == "provides":
            claim["localProvider"] = inst["id"]
        out.append((TOPIC, claim))
    return out
