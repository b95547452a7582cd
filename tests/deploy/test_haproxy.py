"""deploy/haproxy.cfg in front of a real `space-manager serve`: the health check brings the
replica up, API requests pass, and a Hub's raw CONNECT reaches the manager untouched (an
HTTP-mode proxy would answer it itself).

The file is used as it is except for what only exists on the compose network: the listening
address, the two `server` lines (both point at the one local manager) and maxconn (for this
process' file limit)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, need_service
from tests.manager_process import ManagerProcess

HAPROXY_CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
CONNECT = b"CONNECT /api/v1/org-nobody/org-nobody-manager/ HTTP/1.1\r\nHost: x\r\n\r\n"


def _status_line(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    return head.split(b"\r\n", 1)[0]


@pytest.mark.timeout(120)
def test_haproxy_config_passes_api_and_connect_tunnels(tmp_path: Path, monkeypatch):
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    binary = shutil.which("haproxy", path=search)
    if binary is None:
        need_service("haproxy not installed (Debian package haproxy; .ci/run installs it)")
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    manager = ManagerProcess(tmp_path / "data", args=("--no-bootstrap",))
    front = free_port()
    text = HAPROXY_CFG.read_text()
    text = re.sub(r"^(\s*)bind :9000$", rf"\1bind 127.0.0.1:{front}", text, flags=re.M)
    text = re.sub(r"^(\s*server \S+) \S+:9000$", rf"\1 127.0.0.1:{manager.port}", text, flags=re.M)
    # 20,000 connections need 40,000 descriptors, more than this process may open.
    text = re.sub(r"^(\s*)maxconn \d+$", r"\1maxconn 1000", text, flags=re.M)
    assert text.count(f"127.0.0.1:{manager.port}") == 2 and "maxconn 1000" in text
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)

    manager.start()
    proxy = subprocess.Popen(
        [binary, "-db", "-f", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{front}"
        deadline = time.monotonic() + 30  # check every 2 s, up after 2 good ones
        status = None
        while time.monotonic() < deadline and status != 200:
            time.sleep(0.5)
            try:
                status = httpx.get(f"{url}/api/v1/openapi.json", timeout=5).status_code
            except httpx.TransportError:
                status = None
        assert status == 200, "HAProxy never sent a request through"

        direct = _status_line(manager.port, CONNECT)
        assert direct.startswith(b"HTTP/1.1 4"), direct  # refused: no key proof
        assert _status_line(front, CONNECT) == direct
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        manager.stop()
