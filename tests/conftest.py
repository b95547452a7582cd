"""Shared fixtures: databases (SQLite always, PostgreSQL when configured), services, the app.

PostgreSQL runs when MANAGER_TEST_POSTGRES_URL is set (`.ci/run` starts one); in CI its
absence is an error rather than a silent skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

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


def postgres_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(f"{PG_ENV} must be set in CI (.ci/run starts PostgreSQL)")
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
    if not url:
        pytest.skip(f"PostgreSQL not configured ({PG_ENV})")
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
