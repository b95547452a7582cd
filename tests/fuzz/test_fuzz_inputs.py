"""Fuzzing what the manager parses from outside: control-channel NDJSON, CONNECT heads and
their fields, and the Space API's JSON bodies and headers against a real manager process.
CI runs a sample; `make fuzz` runs FUZZ_EXAMPLES=100000 per target. The properties: no
exception escapes, no 500, every error is JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manager.hubs import keys
from manager.hubs.control import ControlDecoder, encode_message
from manager.hubs.hello import space_of, tags_of
from manager.hubs.state import HubState
from tests.manager_process import ManagerProcess

FUZZ = settings(
    database=None,
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
codes = st.sampled_from([7000, 7001, 7002, 7003, 7004, 7005, 7006, 7007, 8000, 9001, 0, -1, 2**40])
payload_keys = st.sampled_from(
    [
        "sequences",
        "instances",
        "instance",
        "id",
        "status",
        "config",
        "topicName",
        "provides",
        "requires",
        "contentType",
        "localProvider",
        "sequence",
        "avgLoad",
        "fsSize",
        "msgCode",
    ]
)
shaped_payloads = st.dictionaries(payload_keys, json_values, max_size=6)


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.builds(lambda c, p: encode_message(c, p), codes, shaped_payloads | json_values),
        ),
        max_size=20,
    ),
    st.integers(min_value=1, max_value=64),
)
def test_control_channel_input(pieces: list[bytes], cut: int) -> None:
    stream = b"".join(pieces)
    decoder = ControlDecoder(max_line=4096)
    state = HubState(hub_id="fuzz")
    for i in range(0, len(stream), cut):
        for msg in decoder.feed(stream[i : i + cut]):
            state.apply(msg.code, msg.payload)
    state.sequence_list()
    state.instance_list()
    json.dumps([state.sequence_list(), state.instance_list(), list(state.topics)])


@FUZZ
@given(st.text(max_size=400), st.text(max_size=300), st.text(max_size=300))
def test_connect_head_fields(authorization: str, target: str, tags: str) -> None:
    try:
        proof = keys.parse_authorization(authorization)
        assert len(proof.digest) == 128
    except keys.ProofFormatError:
        pass
    space = space_of(target)
    assert space is None or isinstance(space, str)
    assert all(isinstance(t, str) for t in tags_of(tags))


@pytest.fixture(scope="module")
def live_manager(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ManagerProcess, str, str]]:
    root = Path(tmp_path_factory.mktemp("fuzz"))
    env = {k: v for k, v in os.environ.items() if k != "MANAGER_DATABASE_URL"}
    manager = ManagerProcess(root / "data", env={**env, "MANAGER_LOG_LEVEL": "warning"})
    manager.env.pop("MANAGER_DATABASE_URL", None)
    manager.start()
    token = manager.token()
    assert token
    space = httpx.get(
        f"{manager.url}/api/v1/spaces", headers={"Authorization": f"Bearer {token}"}
    ).json()[0]["id"]
    try:
        yield manager, token, space
    finally:
        manager.stop()


ROUTES = [
    ("POST", "/api/v1/space/{s}/apikey"),
    ("DELETE", "/api/v1/space/{s}/apikey"),
    ("POST", "/api/v1/space/{s}/api/v1/disconnect"),
    ("POST", "/api/v1/space/{s}/api/v1/sequence/x/start"),
    ("POST", "/api/v1/space/{s}/api/v1/topic/fuzz"),
    ("PUT", "/api/v1/space/{s}/api/v1/s3/fuzz"),
    ("DELETE", "/api/v1/space/{s}/api/v1/sth/nohub"),
    ("GET", "/api/v1/space/{s}/api/v1/sth/nohub/api/v1/version"),
    ("GET", "/api/v1/space/{s}/api/v1/list"),
]
header_names = st.sampled_from(
    ["x-revoke", "x-revoke-all", "x-force", "content-type", "x-end-stream", "expect", "x-sth-id"]
)
latin1 = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=60
)


@FUZZ
@given(
    st.sampled_from(ROUTES),
    st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
    st.dictionaries(header_names, latin1, max_size=4),
)
def test_api_bodies_and_headers(live_manager, route, body: bytes, headers: dict[str, str]) -> None:
    manager, token, space = live_manager
    method, path = route
    resp = httpx.request(
        method,
        manager.url + path.format(s=space),
        content=body,
        headers=[(k.encode(), v.strip().encode("latin-1")) for k, v in headers.items()]
        + [(b"authorization", f"Bearer {token}".encode())],
        timeout=30,
    )
    assert resp.status_code != 500, (route, body[:100], headers, resp.text[:300])
    if resp.status_code >= 400:
        assert resp.headers["content-type"].startswith("application/json"), resp.text[:200]
        resp.json()
