"""Shared fixtures: databases (SQLite always, PostgreSQL when configured), services, the app.

PostgreSQL runs when MANAGER_TEST_POSTGRES_URL is set (`.ci/run` starts one). A test that
needs a system service or binary (PostgreSQL, nginx, ...) calls `need_service`: it skips,
with its reason in the summary, on a machine without it, and fails in CI (env CI set to a
true value), where `.ci/run` installs everything.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from manager.config import Settings
from manager.db import migrate
from manager.services import spaces
from manager.services.context import Services
from manager.services.tokens import IssuedToken, TokenService
from manager.web.app import create_app

PG_ENV = "MANAGER_TEST_POSTGRES_URL"
SQLITE_ONLY = pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_ci() -> bool:
    """Env CI set to a true value (`CI=true`, `CI=1`; not empty, 0, false, no or off)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no", "off")


def need_service(reason: str) -> NoReturn:
    """A system service or binary the test needs is missing: skip (the reason shows in the
    summary with `-rs`), or fail in CI, where `.ci/run` installs all of them."""
    if in_ci():
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        need_service(f"PostgreSQL not configured: set {PG_ENV} (.ci/run starts one)")
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path) -> str:
    if db_kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'manager.db'}"
    url = postgres_url()
    migrate.downgrade(url, "base")
    return url


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        port=free_port(),
        replica_id="test-replica",
    )


@pytest.fixture
async def svc(settings: Settings) -> AsyncIterator[Services]:
    await asyncio.to_thread(migrate.upgrade, settings.effective_database_url)
    services = Services.build(settings)
    try:
        yield services
    finally:
        await services.aclose()


@dataclass
class World:
    """A default org and Space with an admin token, and a second org with a user token."""

    org_id: str
    space_id: str
    admin: IssuedToken
    other_org_id: str
    other_space_id: str
    other_user: IssuedToken


@pytest.fixture
async def world(svc: Services) -> World:
    async with svc.sessions() as s, s.begin():
        boot = await spaces.bootstrap_if_empty(s)
        assert boot is not None
        other = await spaces.create_org(s, "other")
        other_space = await spaces.create_space(s, other.id, "other")
        other_user = await TokenService.create(s, other.id, name="other user")
    return World(
        org_id=boot.org.id,
        space_id=boot.space.id,
        admin=boot.token,
        other_org_id=other.id,
        other_space_id=other_space.id,
        other_user=other_user,
    )


@pytest.fixture
async def api(svc: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (httpx's ASGI transport), for request/response tests."""
    app = create_app(svc)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def bearer(token: IssuedToken | str) -> dict[str, str]:
    value = token.token if isinstance(token, IssuedToken) else token
    return {"Authorization": f"Bearer {value}"}
