"""Shared fixtures: databases (SQLite always, PostgreSQL when configured), services, the app.

PostgreSQL runs when MANAGER_TEST_POSTGRES_URL is set (`.ci/run` starts one). A test that
needs a system service or binary (PostgreSQL, nginx, ...) calls `need_service`: it skips,
with its reason in the summary, on a machine without it, and fails in CI (env CI set to a
true value), where `.ci/run` installs everything.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import httpx
import pytest
import pytest_timeout

from manager.config import Settings
from manager.db import migrate
from manager.services import spaces
from manager.services.context import Services
from manager.services.tokens import IssuedToken, TokenService
from manager.web.app import create_app

PG_ENV = "MANAGER_TEST_POSTGRES_URL"
SQLITE_ONLY = pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)


# Every test has a time limit: `timeout` in pyproject.toml (pytest-timeout), more for the few
# that need it (`@pytest.mark.timeout(...)`). The hook below runs its "signal" method: the
# test fails, named in the summary, and the run goes on.
TIMEOUT_BACKSTOP_S = 60.0
BACKSTOP = pytest.StashKey[threading.Timer]()


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's "signal" method with two additions.

    - When the time is up, the stacks of the event loop's tasks and of the other threads go
      to stderr, so the failure report shows the `await` an async test hangs on (the main
      thread itself only shows the event loop's selector).
    - A backstop: a test still not done TIMEOUT_BACKSTOP_S after its timeout (hung in
      teardown, e.g. the event loop waiting at close for a worker thread of `to_thread` that
      never returns, or out of SIGALRM's reach) ends the run the way the "thread" method
      does: every thread's stack, exit status 1. CI never hangs.
    """
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own implementation

    def on_alarm(signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        if not settings.disable_debugger_detection and pytest_timeout.is_debugging():
            return
        dump_tasks_and_threads(exclude=backstop.ident)
        pytest.fail(f"Timeout (>{settings.timeout:g} s) from pytest-timeout")

    def backstop_fired() -> None:
        print(
            f"\n{item.nodeid} still running {TIMEOUT_BACKSTOP_S:g} s after its "
            f"{settings.timeout:g} s timeout: ending the run",
            file=sys.stderr,
        )
        pytest_timeout.timeout_timer(item, settings)

    backstop = threading.Timer(settings.timeout + TIMEOUT_BACKSTOP_S, backstop_fired)
    backstop.name = f"timeout backstop {item.nodeid}"
    backstop.daemon = True

    def cancel() -> None:
        # pytest-timeout calls this at the end and also on any failure (before teardown); the
        # backstop stays until the end of the test (pytest_runtest_protocol below)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    if not item.config.getoption("usepdb", False):
        item.stash[BACKSTOP] = backstop
        backstop.start()
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    try:
        return (yield)
    finally:
        if (backstop := item.stash.get(BACKSTOP, None)) is not None:
            backstop.cancel()


def dump_tasks_and_threads(exclude: int | None) -> None:
    try:
        tasks = sorted(asyncio.all_tasks(asyncio.get_running_loop()), key=lambda t: t.get_name())
    except RuntimeError:  # no event loop running: a sync test
        tasks = []
    for task in tasks:
        task.print_stack(limit=20, file=sys.stderr)
    current = threading.get_ident()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        if ident not in (current, exclude):
            print(f"Stack of thread {names.get(ident, ident)}:", file=sys.stderr)
            print("".join(traceback.format_stack(frame)), file=sys.stderr)


T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None] | T | None],
    what: str = "condition",
    timeout: float = 20,
) -> T:
    """The first truthy result of `check` (a plain or an async function), polled every 0.1 s
    until `timeout` s; never blocks the event loop (the manager under test may run in it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last  # type: ignore[return-value]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}; last: {last!r}")
        await asyncio.sleep(0.1)


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
