"""The Panel in a real headless Chromium against a live manager and real STH 1.0.1 Hubs.

Each test saves screenshots under its tmp_path (`*.png`) so a person can look at what a
user sees.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.interop.packages import write_hello_package
from tests.interop.sth import HubFleet
from tests.running import RunningManager

pytestmark = pytest.mark.interop


class Panel:
    """One browser tab on the manager's Panel."""

    def __init__(self, page: Any, manager: RunningManager, shots: Path) -> None:
        self.page = page
        self.manager = manager
        self.shots = shots
        self.dialogs: list[str] = []
        page.on("dialog", self._accept)

    async def _accept(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        await dialog.accept()

    @property
    def space_url(self) -> str:
        return f"{self.manager.url}/panel/space/{self.manager.world.space_id}"

    async def sign_in(self, token: str) -> None:
        await self.page.goto(f"{self.manager.url}/panel/")
        assert self.page.url.endswith("/panel/signin")
        await self.page.fill("#token", token)
        await self.page.click("#signin-form button[type=submit]")
        await self.page.wait_for_load_state()

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def mark_document(self) -> None:
        """Marks this document; `same_document` tells whether the page has been reloaded."""
        await self.page.evaluate("window.__panelTest = 1")

    async def same_document(self) -> bool:
        return bool(await self.page.evaluate("window.__panelTest === 1"))

    async def ticks(self, count: int) -> None:
        """Until the Instance stream in the page shows `count` ticks."""
        await self.page.wait_for_function(
            "n => document.getElementById('stream-out').textContent.split('tick').length > n",
            arg=count,
            timeout=30_000,
        )

    async def hub_row(self, hub_id: str, status: str, timeout: float = 30) -> None:
        await self.page.wait_for_selector(
            f'tr[data-hub="{hub_id}"][data-status="{status}"]', timeout=timeout * 1000
        )


@pytest.fixture
async def panel(browser: Any, manager: RunningManager, tmp_path: Path) -> Panel:
    return Panel(await browser.new_page(), manager, tmp_path)


async def test_sign_in_watch_a_hub_turn_healthy_and_disconnect_it(
    panel: Panel, manager: RunningManager, real_hubs: HubFleet
):
    await panel.sign_in(manager.world.admin.token)
    assert panel.page.url.endswith("/panel/spaces")
    await panel.page.click(f'a[href="/panel/space/{manager.world.space_id}"]')
    assert "No Hub has joined this Space yet" in await panel.page.inner_text("#hubs")
    await panel.mark_document()

    hub = await real_hubs.start("panel-hub", join=False, description="lab box", tags="lab,x86")
    await panel.hub_row("panel-hub", "healthy")
    assert await panel.same_document(), "the Hub turned healthy in the page without a reload"
    row = await panel.page.inner_text('tr[data-hub="panel-hub"]')
    assert "Healthy" in row and "lab box" in row and "lab" in row and "CPU" in row
    content = await panel.page.content()
    assert manager.world.admin.token not in content

    # The "Plan and limits" card counts the Hub against a plan of one Hub per Space.
    h = manager.client
    assert (await h.post("/api/v1/plans", json={"name": "solo", "hubsPerSpace": 1})).is_success
    org_plan = f"/api/v1/org/{manager.world.org_id}/plan"
    assert (await h.put(org_plan, json={"plan": "solo"})).is_success
    await panel.page.reload()
    await panel.hub_row("panel-hub", "healthy")
    plan = await panel.page.inner_text("#plan")
    assert "Plan and limits" in plan and "solo" in plan
    assert "1 of 1 Hub" in plan and "limit reached" in plan
    await panel.shot("space-with-healthy-hub")

    # seed 000: "selecting the desired Self Hosted Hub and clicking the disconnect button"
    await panel.page.click('tr[data-hub="panel-hub"] a[data-action="disconnect"]')
    assert "Disconnect Hub panel-hub?" in await panel.page.inner_text("h1")
    await panel.shot("confirm-disconnect")
    await panel.page.click("#confirm-button")
    await panel.page.wait_for_selector("#notice")
    assert "was disconnected" in await panel.page.inner_text("#notice")
    await panel.hub_row("panel-hub", "disconnected", timeout=5)
    await panel.shot("hub-disconnected")

    # The real Hub stops retrying: no new connection attempt in 3 of its 2 s retry intervals.
    attempts = hub.log().count("Connecting to Manager")
    await asyncio.sleep(6.5)
    assert hub.log().count("Connecting to Manager") == attempts
    assert not (await manager.hub("panel-hub"))["isConnectionActive"]


async def test_generate_a_key_once_join_a_hub_with_it_and_revoke_it(
    panel: Panel, manager: RunningManager, real_hubs: HubFleet
):
    await panel.sign_in(manager.world.admin.token)
    await panel.page.goto(panel.space_url)
    await panel.page.fill("#key-description", "from the panel")
    await panel.page.click("#generate")
    await panel.page.wait_for_selector("#new-key", state="visible")
    key = (await panel.page.inner_text("#new-key-value")).strip()
    command = (await panel.page.inner_text("#new-key-command")).strip()
    space = manager.world.space_id
    assert key.startswith("SCP-")
    assert command == (
        f"scramjet-transform-hub --platform-api {manager.url} "
        f"--platform-space {manager.world.org_id}:{space} --platform-api-key {key}"
    )
    assert "from the panel" in await panel.page.inner_text("#key-list")
    await panel.shot("key-generated")

    await panel.page.reload()
    assert key not in await panel.page.content(), "the key is shown once"
    assert await panel.page.is_hidden("#new-key")
    assert "from the panel" in await panel.page.inner_text("#key-list")

    # The key from the page joins a real Hub.
    await real_hubs.start("keyed-hub", key=key)
    await panel.hub_row("keyed-hub", "healthy")

    # Revoke it: asked first, then the Hub that joined with it is dropped.
    await panel.page.click('#key-list tr:has-text("from the panel") button:has-text("Revoke")')
    await panel.page.wait_for_selector("#notice")
    assert panel.dialogs and "Revoke this key?" in panel.dialogs[-1]
    assert "No access key yet" in await panel.page.inner_text("#key-list")
    await panel.hub_row("keyed-hub", "disconnected", timeout=10)
    assert (await manager.hub("keyed-hub"))["disconnectReason"] == "access key revoked"
    await panel.shot("key-revoked")


async def test_start_a_sequence_and_watch_its_output_arrive(
    panel: Panel, manager: RunningManager, real_hubs: HubFleet, tmp_path: Path
):
    await real_hubs.start("seq-hub")
    package = write_hello_package(tmp_path / "hello.tar.gz")
    await panel.sign_in(manager.world.admin.token)
    await panel.page.goto(f"{panel.space_url}/hub/seq-hub")
    assert "Healthy" in await panel.page.inner_text("#hub-summary")
    await panel.mark_document()

    await panel.page.set_input_files("#seq-file", str(package))
    await panel.page.click("#seq-send")  # sends, then starts it and watches its output
    out = panel.page.locator("#stream-out")
    # The Sequence yields '{"tick":N}\n' every 200 ms (the Hub sends each as a JSON string,
    # which the page shows as the text it is).
    await panel.ticks(3)
    first = await out.inner_text()
    assert first.startswith('{"tick":0}\n{"tick":1}\n')
    await panel.ticks(first.count("tick") + 3)
    assert await panel.same_document()
    await panel.page.wait_for_selector("#instances tr[data-instance]")
    inst_id = await panel.page.get_attribute("#instances tr[data-instance]", "data-instance")
    assert "running" in await panel.page.inner_text(f'tr[data-instance="{inst_id}"]')
    assert "hello-seq" in await panel.page.inner_text("#sequences")
    await panel.shot("instance-output")

    await panel.page.click(f'tr[data-instance="{inst_id}"] button[data-action="kill"]')
    await panel.page.wait_for_selector("#watch-label:has-text('(ended)')", timeout=30_000)
    assert await panel.page.is_hidden("#hub-message")


async def test_wrong_token_and_a_form_without_csrf_are_refused(
    panel: Panel, manager: RunningManager
):
    await panel.sign_in(manager.world.admin.token[:-6] + "AAAAAA")
    assert panel.page.url.endswith("/panel/signin")
    assert "That token was not accepted" in await panel.page.inner_text("#signin-error")
    await panel.shot("wrong-token")

    await panel.sign_in(manager.world.admin.token)
    await panel.page.goto(panel.space_url)
    # A form posted without its hidden CSRF field (and without the page's script).
    await panel.page.evaluate(
        """() => { const f = document.getElementById("generate-key");
                   f.querySelector("input[name=csrf]").remove(); f.submit(); }"""
    )
    await panel.page.wait_for_selector("#error-message")
    assert "security token" in await panel.page.inner_text("#error-message")
    await panel.shot("csrf-refused")
    keys = await manager.client.get(f"/api/v1/space/{manager.world.space_id}/apikey")
    assert keys.json() == {"accessKeys": []}


async def test_a_user_of_another_organization_sees_none_of_it(
    panel: Panel, manager: RunningManager
):
    await manager.new_key("admin's key")
    await panel.sign_in(manager.world.other_user.token)
    spaces = await panel.page.inner_text("#spaces")
    assert manager.world.other_space_id in spaces and manager.world.space_id not in spaces
    await panel.page.goto(panel.space_url)
    assert "not yours to see" in await panel.page.inner_text("#error-message")
    assert "admin's key" not in await panel.page.content()
    await panel.shot("other-organization")
    answer = await panel.page.evaluate(
        f"fetch('/api/v1/space/{manager.world.space_id}/apikey').then(r => r.status)"
    )
    assert answer == 403
