"""The operator CLI and `serve` as a real process: first-start bootstrap, restart, admin."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from manager.cli.main import cli
from manager.db import migrate
from tests.manager_process import ManagerProcess


def _invoke(runner: CliRunner, data_dir: Path, *args: str) -> str:
    result = runner.invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result.stdout


def test_admin_commands(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    runner = CliRunner()
    _invoke(runner, data, "db", "upgrade")
    org_id = _invoke(runner, data, "org", "create", "acme").strip()
    assert org_id.startswith("org-")
    space_id = _invoke(runner, data, "space", "create", "--org", org_id).strip()
    assert space_id == f"{org_id}-manager"
    spaces = [json.loads(x) for x in _invoke(runner, data, "space", "list").splitlines()]
    assert spaces == [{"id": space_id, "orgId": org_id, "name": space_id}]

    token = _invoke(runner, data, "token", "create", "--org", org_id).strip()
    assert token.count(".") == 2

    keys = []
    for i in range(5):
        result = runner.invoke(
            cli,
            [
                "--data-dir",
                str(data),
                "access-key",
                "create",
                "--space",
                space_id,
                "--description",
                f"k{i}",
            ],
        )
        assert result.exit_code == 0
        keys.append(result.stdout.strip())
        assert f"--platform-space {org_id}:{space_id}" in result.stderr
    sixth = runner.invoke(
        cli, ["--data-dir", str(data), "access-key", "create", "--space", space_id]
    )
    assert sixth.exit_code != 0 and "5 access keys" in sixth.output

    listed = [
        json.loads(x)
        for x in _invoke(runner, data, "access-key", "list", "--space", space_id).splitlines()
    ]
    assert [k["description"] for k in listed] == [f"k{i}" for i in range(5)]
    assert not any(key in json.dumps(listed) for key in keys)

    _invoke(runner, data, "access-key", "revoke", "--space", space_id, str(listed[0]["created"]))
    out = _invoke(runner, data, "access-key", "revoke", "--space", space_id, "--all")
    assert "revoked 4 key(s)" in out

    secret = data / "server-secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def test_serve_bootstraps_once_and_survives_restart(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    manager = ManagerProcess(tmp_path / "data")
    manager.start()
    try:
        token = manager.token()
        assert token, manager.stdout
        assert "si config set json" in manager.stdout and f"{manager.url}/api/v1" in manager.stdout
        resp = httpx.get(
            f"{manager.url}/api/v1/spaces", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 200
        space_id = resp.json()[0]["id"]
    finally:
        manager.stop()
    assert token not in manager.logs()

    manager.start()
    try:
        assert manager.token() is None, "the token must be printed only on the first start"
        resp = httpx.get(
            f"{manager.url}/api/v1/spaces", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.json()[0]["id"] == space_id
    finally:
        manager.stop()
    migrate.check(f"sqlite+aiosqlite:///{(tmp_path / 'data' / 'manager.db').resolve()}")


def test_secret_rotation_revokes_every_key(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    monkeypatch.delenv("MANAGER_SECRET", raising=False)
    data = tmp_path / "data"
    runner = CliRunner()
    _invoke(runner, data, "db", "upgrade")
    org_id = _invoke(runner, data, "org", "create", "acme").strip()
    space_id = _invoke(runner, data, "space", "create", "--org", org_id).strip()
    _invoke(runner, data, "access-key", "create", "--space", space_id)
    before = (data / "server-secret").read_text()
    out = _invoke(runner, data, "secret", "rotate", "--yes")
    assert "1 access keys revoked" in out
    assert (data / "server-secret").read_text() != before
    assert stat.S_IMODE(os.stat(data / "server-secret").st_mode) == 0o600
    assert _invoke(runner, data, "access-key", "list", "--space", space_id).strip() == ""


def test_event_loop_choice():
    from manager.web.server import event_loop_factory

    assert event_loop_factory("asyncio") is None
    try:
        import uvloop
    except ImportError:
        assert event_loop_factory("auto") is None
        with pytest.raises(SystemExit, match="uvloop is not installed"):
            event_loop_factory("uvloop")
    else:
        assert event_loop_factory("auto") is uvloop.new_event_loop


def test_plan_commands_as_the_readme_shows_them(tmp_path: Path, monkeypatch):
    """README "Plans and limits": the commands, their JSON, and the limits they set."""
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    runner = CliRunner()
    _invoke(runner, data, "db", "upgrade")
    org_id = _invoke(runner, data, "org", "create", "acme").strip()
    space_id = _invoke(runner, data, "space", "create", "--org", org_id).strip()

    solo = json.loads(
        _invoke(runner, data, "plan", "create", "solo", "--hubs", "1", "--spaces", "2",
                "--rate", "20", "--burst", "40")
    )  # fmt: skip
    assert solo == {
        "name": "solo",
        "hubsPerSpace": 1,
        "spacesPerOrg": 2,
        "storeBytesPerSpace": None,
        "requestsPerSecond": 20,
        "burst": 40,
    }
    assert _invoke(runner, data, "org", "set-plan", org_id, "solo").strip() == (
        f"{org_id} is on plan solo"
    )
    changed = json.loads(_invoke(runner, data, "plan", "set", "solo", "--hubs", "2"))
    assert changed == {**solo, "hubsPerSpace": 2}
    own = json.loads(
        _invoke(runner, data, "space", "set-limit", "--space", space_id, "--hubs", "3")
    )
    assert own["hubsPerSpace"] == {"limit": 3, "source": "space"}
    back = json.loads(
        _invoke(runner, data, "space", "set-limit", "--space", space_id, "--hubs", "plan")
    )
    assert back["hubsPerSpace"] == {"limit": 2, "source": "plan"}
    listed = [json.loads(x) for x in _invoke(runner, data, "plan", "list").splitlines()]
    assert [p["name"] for p in listed] == ["default", "solo"]
    assert listed[0]["hubsPerSpace"] is None  # the built-in default: unlimited

    # The plan allows 2 Spaces: the second is made, the third refused, naming plan and limit.
    _invoke(runner, data, "space", "create", "--org", org_id)
    third = runner.invoke(cli, ["--data-dir", str(data), "space", "create", "--org", org_id])
    assert third.exit_code == 1
    assert "spacesPerOrg 2 of plan 'solo'" in third.output
    assert len(_invoke(runner, data, "space", "list").splitlines()) == 2

    for args, text in [
        (["plan", "set", "solo", "--hubs", "lots"], "hubsPerSpace must be a whole number"),
        (["plan", "set", "solo", "--rate", "0"], "requestsPerSecond must be between 1"),
        (["plan", "set", "solo"], "give at least one limit"),
        (["plan", "create", "solo"], "Plan solo already exists"),
        (["org", "set-plan", org_id, "gold"], "Plan gold not found"),
        (["space", "set-limit", "--space", "nope", "--hubs", "1"], "Space nope not found"),
    ]:
        result = runner.invoke(cli, ["--data-dir", str(data), *args])
        assert result.exit_code != 0 and text in result.output, (args, result.output)


def test_tune_gc_freezes_the_start_up_heap_and_keeps_collecting_cycles():
    import gc

    from manager.web.server import tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(young=5_000)
        assert gc.get_freeze_count() > 10_000  # modules, the app: out of every later walk
        assert gc.get_threshold()[0] == 5_000 and gc.isenabled()

        class Node:
            other: object = None

        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2  # cycles made after the freeze are still found
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
