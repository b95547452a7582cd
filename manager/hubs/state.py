"""What the manager knows about one connected Hub, rebuilt from its control messages.

Pure data plus `apply(code, payload)`, so the control-channel handling is testable without a
tunnel. The Hub resends full snapshots on every new control channel (hub-protocol.md §5.5)
and never retransmits events, so snapshots replace and events patch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

STH_ID = 7000
LOAD = 7001
NETWORK_INFO = 7002
INSTANCES = 7003
SEQUENCES = 7004
INSTANCE = 7005
SEQUENCE = 7006
TOPIC = 7007
KEY_REVOKED = 9001
LIMIT_EXCEEDED = 9002
ID_DROP = 9003

TOPIC_TYPES = frozenset(
    {"text/x-ndjson", "application/x-ndjson", "text/plain", "application/octet-stream"}
)


@dataclass
class TopicInfo:
    name: str
    content_type: str = "application/x-ndjson"
    provides: bool = False
    requires: bool = False
    local_provider: str = ""


@dataclass
class HubState:
    hub_id: str
    sequences: dict[str, dict[str, Any]] = field(default_factory=dict)
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    load: dict[str, Any] | None = None
    load_at: float | None = None
    network_info: list[Any] | None = None
    # Bumped by each message that changes what a Hub list shows (not LOAD or network info,
    # which every Hub sends every few seconds): the list's cached entries are keyed on it.
    changes: int = 0

    def healthy(self, within_s: float, now: float | None = None) -> bool:
        if self.load_at is None:
            return False
        return (now if now is not None else time.monotonic()) - self.load_at <= within_s

    def apply(self, code: int, payload: Any) -> bool:
        """Fold one Hub → manager message in; False when it was not understood."""
        handler = _HANDLERS.get(code)
        if handler is None:
            return False
        ok = handler(self, payload)
        if ok and handler is not _load and handler is not _network:
            self.changes += 1
        return ok

    def snapshot(self) -> dict[str, Any]:
        """What another replica needs to show this Hub in the Space's views (JSON-ready)."""
        return {
            "sequences": self.sequences,
            "instances": self.instances,
            "topics": [vars(t) for t in self.topics.values()],
            "load": self.load,
            "changes": self.changes,
        }

    @classmethod
    def from_snapshot(cls, hub_id: str, data: dict[str, Any]) -> HubState:
        """The inverse of `snapshot`, for a Hub another replica holds; malformed parts are
        left empty rather than trusted."""
        state = cls(hub_id=hub_id)
        if isinstance(data.get("sequences"), dict):
            state.sequences = data["sequences"]
        if isinstance(data.get("instances"), dict):
            state.instances = data["instances"]
        for raw in data.get("topics") or []:
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                known = {k: raw[k] for k in vars(TopicInfo(name="")) if k in raw}
                state.topics[raw["name"]] = TopicInfo(**known)
        if isinstance(data.get("load"), dict):
            state.load = data["load"]
            state.load_at = time.monotonic()
        if isinstance(data.get("changes"), int):
            state.changes = data["changes"]
        return state

    def sequence_list(self) -> list[dict[str, Any]]:
        return [dict(seq, location=self.hub_id) for seq in self.sequences.values()]

    def instance_list(self) -> list[dict[str, Any]]:
        return list(self.instances.values())


def _load(state: HubState, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    if state.load is None:
        state.load = {}
    _refresh(state.load, payload)
    state.load_at = time.monotonic()
    return True


def _refresh(kept: dict[str, Any], payload: dict[str, Any]) -> None:
    """`kept` made equal to `payload` without its msgCode, in place, top-level lists too.

    Why not a new dict per LOAD: a Hub's figures live until its next LOAD (5 s), long enough
    to be promoted by the young garbage collections, so 10,000 Hubs had a dict and a list a
    second each counted towards the next full collection (and, as the old ones died, young
    collections grew long without growing frequent). Updated in place, they are promoted
    once; what is inside (numbers, flat entries) is not tracked by the collector at all."""
    for gone in [k for k in kept if k not in payload or k == "msgCode"]:
        del kept[gone]
    for key, value in payload.items():
        if key == "msgCode":
            continue
        old = kept.get(key)
        if type(value) is list and type(old) is list:
            old[:] = value
        else:
            kept[key] = value


def _network(state: HubState, payload: Any) -> bool:
    if not isinstance(payload, list):
        return False
    state.network_info = payload
    return True


def _sequence_record(raw: dict[str, Any]) -> dict[str, Any] | None:
    sid = raw.get("id")
    if not isinstance(sid, str) or not sid:
        return None
    record = {k: v for k, v in raw.items() if k != "status"}
    record.setdefault("config", {})
    record.setdefault("instances", [])
    return record


def _sequences(state: HubState, payload: Any) -> bool:
    items = payload.get("sequences") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return False
    fresh: dict[str, dict[str, Any]] = {}
    for raw in items:
        record = _sequence_record(raw) if isinstance(raw, dict) else None
        if record is not None:
            fresh[record["id"]] = record
    state.sequences = fresh
    return True


def _sequence(state: HubState, payload: Any) -> bool:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        return False
    sid = payload["id"]
    if payload.get("status") == 1:
        state.sequences.pop(sid, None)
        return True
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    old = state.sequences.get(sid, {})
    state.sequences[sid] = {
        "id": sid,
        "config": config,
        "instances": old.get("instances", []),
        **({"name": payload["name"]} if isinstance(payload.get("name"), str) else {}),
    }
    return True


def _instance_record(raw: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    record = dict(old or {})
    record.update(raw)
    seq = record.get("sequence")
    if isinstance(seq, str):  # 0.18-era Hubs name the sequence by id only
        record["sequence"] = {"id": seq}
    if isinstance(record.get("status"), int):
        record["status"] = {0: "running", 1: "stopping", 2: "completed", 3: "errored"}.get(
            record["status"], "running"
        )
    record.setdefault("status", "running")
    return record


def _instances(state: HubState, payload: Any) -> bool:
    items = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return False
    fresh: dict[str, dict[str, Any]] = {}
    for raw in items:
        if isinstance(raw, dict) and isinstance(raw.get("id"), str):
            fresh[raw["id"]] = _instance_record(raw, None)
    state.instances = fresh
    _relink_instances(state)
    return True


def _instance(state: HubState, payload: Any) -> bool:
    raw = payload.get("instance") if isinstance(payload, dict) else None
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        return False
    iid = raw["id"]
    if raw.get("status") == "gone" or (raw.get("status") == 2 and "started" not in raw):
        state.instances.pop(iid, None)
    else:
        state.instances[iid] = _instance_record(raw, state.instances.get(iid))
    _relink_instances(state)
    return True


def _relink_instances(state: HubState) -> None:
    """Keep each Sequence's `instances` list in step with the instance table."""
    by_seq: dict[str, list[str]] = {}
    for iid, inst in state.instances.items():
        seq = inst.get("sequence")
        sid = seq.get("id") if isinstance(seq, dict) else None
        if isinstance(sid, str):
            by_seq.setdefault(sid, []).append(iid)
    for sid, seq in state.sequences.items():
        seq["instances"] = by_seq.get(sid, [])


def _topic(state: HubState, payload: Any) -> bool:
    if not isinstance(payload, dict):
        return False
    name = payload.get("topicName") or payload.get("topic")
    name = name or payload.get("provides") or payload.get("requires")
    if not isinstance(name, str) or not name:
        return False
    if payload.get("status") == "remove":
        state.topics.pop(name, None)
        return True
    info = state.topics.setdefault(name, TopicInfo(name=name))
    ctype = payload.get("contentType")
    if isinstance(ctype, str) and ctype in TOPIC_TYPES:
        info.content_type = ctype
    if payload.get("provides"):
        info.provides = True
    if payload.get("requires"):
        info.requires = True
    if isinstance(payload.get("localProvider"), str) and payload["localProvider"]:
        info.local_provider = payload["localProvider"]
        info.provides = True
    return True


_HANDLERS = {
    LOAD: _load,
    NETWORK_INFO: _network,
    SEQUENCES: _sequences,
    SEQUENCE: _sequence,
    INSTANCES: _instances,
    INSTANCE: _instance,
    TOPIC: _topic,
}
