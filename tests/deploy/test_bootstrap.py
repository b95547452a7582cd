"""`space-manager bootstrap` and `serve --no-bootstrap`: with several replicas exactly one
process (the compose one-shot, the Kubernetes Job) creates the first admin token and prints it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from manager.cli.main import cli
from tests.manager_process import TOKEN_LINE, ManagerProcess


@pytest.fixture(autouse=True)
def _sqlite(monkeypatch):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)


def _run(data: Path, *args: str):
    result = CliRunner().invoke(cli, ["--data-dir", str(data), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return result


def test_bootstrap_prints_the_token_once(tmp_path: Path):
    data = tmp_path / "data"
    first = _run(data, "bootstrap")
    tokens = TOKEN_LINE.findall(first.stdout)
    assert len(tokens) == 1, first.stdout
    assert "si config set json" in first.stdout

    again = _run(data, "bootstrap")
    assert TOKEN_LINE.search(again.stdout) is None
    assert "nothing created" in again.stderr
    spaces = [json.loads(line) for line in _run(data, "space", "list").stdout.splitlines()]
    assert len(spaces) == 1  # one organization, one Space: the second run made nothing


def test_serve_no_bootstrap_leaves_an_empty_database_empty(tmp_path: Path):
    data = tmp_path / "data"
    manager = ManagerProcess(data, args=("--no-bootstrap",))
    manager.start()
    try:
        assert manager.token() is None, manager.stdout
        assert httpx.get(f"{manager.url}/api/v1/openapi.json").status_code == 200
    finally:
        manager.stop()
    assert _run(data, "space", "list").stdout == ""
    # ... and the one-shot that runs beside such replicas creates and prints it.
    assert len(TOKEN_LINE.findall(_run(data, "bootstrap").stdout)) == 1
