"""What an operator scrapes and traces, through a real-packages Hub peer: every documented
metric family after a proxied request (parsed by prometheus_client's own parser), the
README's table in step with that list, and one request id from client to Hub and back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from manager.services.metrics import DOCUMENTED
from tests.interop.peer import join_hub
from tests.running import RunningManager

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def hub(manager: RunningManager) -> AsyncIterator[str]:
    """A joined Hub peer: the path of its API through the proxy."""
    peer = await join_hub(manager, "metered")
    try:
        yield f"/api/v1/space/{manager.world.space_id}/api/v1/sth/metered/api/v1"
    finally:
        await peer.stop()


def scrape(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """{family name as on its TYPE line: [(sample name, labels, value)]}."""
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = [(s.name, s.labels, s.value) for s in family.samples]
    return out


async def test_every_documented_metric_after_a_proxied_request(manager: RunningManager, hub: str):
    resp = await manager.client.post(f"{hub}/echo/count", content=b"x" * 1000)
    assert resp.status_code == 200
    resp = await manager.client.get("/api/v1/metrics")
    assert resp.status_code == 200
    families = scrape(resp.text)
    missing = [name for name in DOCUMENTED if name not in families]
    assert missing == [], missing
    assert "process_cpu_seconds_total" in families  # the process collector
    assert "process_open_fds" in families

    def value(family: str, sample: str, **labels: str) -> float:
        found = [v for n, lab, v in families[family] if n == sample and lab == labels]
        assert found, (family, sample, labels, families[family])
        return found[0]

    space = manager.world.space_id
    assert value("manager_hubs_connected", "manager_hubs_connected") == 1
    assert value("manager_space_hubs_connected", "manager_space_hubs_connected", space=space) == 1
    assert (
        value("manager_proxied_requests_total", "manager_proxied_requests_total", code="200") == 1
    )
    count = "manager_proxied_request_duration_seconds_count"
    assert value("manager_proxied_request_duration_seconds", count) == 1
    sent = value("manager_proxied_bytes_total", "manager_proxied_bytes_total", direction="to_hub")
    assert sent == 1000
    admitted = value(
        "manager_tunnel_admissions_total", "manager_tunnel_admissions_total", outcome="admitted"
    )
    assert admitted == 1
    assert value("manager_draining", "manager_draining") == 0
    assert value("manager_channels_open", "manager_channels_open") >= 1  # the control channel


def test_the_readme_lists_every_documented_metric():
    text = README.read_text()
    table = set(re.findall(r"^\| `(manager_[a-z_]+)`", text, re.M))
    assert table == set(DOCUMENTED)


async def test_one_request_id_from_client_to_hub_and_back(manager: RunningManager, hub: str):
    url = f"{hub}/echo/headers"
    resp = await manager.client.get(url, headers={"x-request-id": "trace-42.a"})
    assert resp.headers["x-request-id"] == "trace-42.a"
    assert resp.json()["headers"]["x-request-id"] == "trace-42.a"
    # An id that could garble a log line is replaced by one of ours, the same both ways.
    resp = await manager.client.get(url, headers={"x-request-id": 'a" b\\n{'})
    made = resp.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", made)
    assert resp.json()["headers"]["x-request-id"] == made
    assert resp.headers.get_list("x-request-id") == [made]
    # Without one, every answer still has one (errors too).
    resp = await manager.client.get(f"{hub}/no/such/route")
    assert resp.headers["x-request-id"]
    async with httpx.AsyncClient(base_url=manager.url) as anonymous:
        assert (await anonymous.get("/api/v1/spaces")).headers["x-request-id"]
