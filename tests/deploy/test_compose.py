"""deploy/compose.yaml, haproxy.cfg and .env.example: valid, and wired as the README says.

compose.yaml is validated against the Compose Specification's JSON schema as check-jsonschema
ships it (`--builtin-schema vendor.compose-spec`; no compose binary is installable here), then
read with PyYAML for what a schema cannot say (the one-shot bootstrap before the replicas, one
peer URL per replica, every replica behind HAProxy). haproxy.cfg is checked by `haproxy -c`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import need_service

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
HAPROXY = DEPLOY / "haproxy.cfg"
ENV_EXAMPLE = DEPLOY / ".env.example"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _managers(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s.get("command", [""])[0] == "serve"}


def test_compose_file_matches_the_compose_spec():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bootstrap_runs_once_before_the_replicas(compose: dict):
    services = compose["services"]
    boot = services["bootstrap"]
    assert boot["command"] == ["bootstrap"] and boot["restart"] == "no"
    assert boot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])

    managers = _managers(compose)
    assert len(managers) == 2
    for name, svc in managers.items():
        # replicas never bootstrap: only the one-shot prints the admin token
        assert svc["command"] == ["serve", "--no-bootstrap"], name
        dep = svc["depends_on"]["bootstrap"]["condition"]
        assert dep == "service_completed_successfully", name


def test_each_replica_has_its_own_identity_and_the_shared_secrets(compose: dict):
    managers = _managers(compose)
    ids = {svc["environment"]["MANAGER_REPLICA_ID"] for svc in managers.values()}
    assert ids == set(managers)
    for name, svc in managers.items():
        env = svc["environment"]
        port = env["MANAGER_PEER_PORT"]
        assert env["MANAGER_PEER_URL"] == f"http://{name}:{port}"
        for key in ("MANAGER_DATABASE_URL", "MANAGER_SECRET", "MANAGER_PEER_SECRET"):
            assert "${" in env[key], f"{name}: {key} comes from deploy/.env"
        assert env["MANAGER_DATABASE_URL"].startswith("postgresql://")
        # docker stops a container after stop_grace_period: the drain must fit in it
        drain = int(env["MANAGER_DRAIN_GRACE_S"]) + int(env["MANAGER_DRAIN_WINDOW_S"])
        assert int(svc["stop_grace_period"].rstrip("s")) >= drain + 5
        assert "ports" not in svc, "replicas are reached through HAProxy only"


def test_every_variable_is_documented_in_the_env_example():
    used = set(re.findall(r"\$\{([A-Z_]+)(:?[-?])?", COMPOSE.read_text()))
    documented = set(re.findall(r"^#? ?([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.M))
    missing = sorted(name for name, _ in used if name not in documented)
    assert not missing, f"not in deploy/.env.example: {missing}"
    required = {name for name, op in used if op == ":?"}
    assert {"POSTGRES_PASSWORD", "MANAGER_SECRET", "MANAGER_PEER_SECRET"} <= required


def test_the_real_env_file_is_git_ignored():
    root = DEPLOY.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "-C", str(root), "check-ignore", "-q", "deploy/.env"], check=False
    )
    assert result.returncode == 0, "deploy/.env must be git-ignored"


def test_haproxy_passes_tcp_to_every_replica_checking_readiness(compose: dict):
    text = HAPROXY.read_text()
    assert re.search(r"^\s*mode tcp$", text, re.M)
    assert "option httpchk" in text and "uri /readyz" in text
    servers = set(re.findall(r"^\s*server (\S+) (\S+):9000$", text, re.M))
    assert servers == {(name, name) for name in _managers(compose)}
    haproxy = compose["services"]["haproxy"]
    assert any(v.startswith("./haproxy.cfg:") for v in haproxy["volumes"])


def test_haproxy_accepts_the_config():
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])  # Debian puts it there
    binary = shutil.which("haproxy", path=search)
    if binary is None:
        need_service("haproxy not installed (Debian package haproxy; .ci/run installs it)")
    result = subprocess.run(
        [binary, "-c", "-f", str(HAPROXY)], capture_output=True, text=True, timeout=30
    )
    # The replicas' names resolve only on the compose network (init-addr none allows that).
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
