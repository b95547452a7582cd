"""Fixtures for the Panel's browser tests: the running manager and real STH 1.0.1 Hubs of
the interop suite, and a headless Chromium from the system's packages driven by Playwright.

The browser is Debian's `chromium` (`.ci/run` installs it), never one Playwright downloads:
without it the browser tests skip here and fail in CI (`need_service`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need_service
from tests.interop.conftest import db_kind, real_hubs
from tests.running import RunningManager, manager

__all__ = ["RunningManager", "db_kind", "manager", "real_hubs"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser(tmp_path: Path, manager: RunningManager) -> AsyncIterator[Any]:
    """A fresh headless Chromium profile (a `BrowserContext`) for one test. It needs the
    manager so that it closes first: the manager's shutdown waits for the streams the
    pages hold open."""
    if not CHROMIUM.exists():
        need_service(f"Chromium is not at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need_service("playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(20_000)
        try:
            yield context
        finally:
            with contextlib.suppress(Exception):
                await context.close()
