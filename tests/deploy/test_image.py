"""deploy/Dockerfile: the image builds with podman, and the built image starts the manager,
which answers its probes and the API.

How it is done, as it works on these machines and in CI (which reach PyPI, Debian and npm
mirrors and no container registry):
- Base image: DEPLOY_BASE_IMAGE if set; else the Dockerfile's default, python:3.11-slim-bookworm,
  if `podman pull` gets it within 20 s; else one made here: `debootstrap --variant=minbase
  bookworm` with Debian's python3 (3.11), python3-venv and ca-certificates, `podman import`ed
  and passed as BASE_IMAGE.
- Python packages: the host's pip fetches the wheels (`pip wheel`), a loopback HTTP server
  hands them to the build (build args PIP_NO_INDEX=1, PIP_FIND_LINKS=http://127.0.0.1:...),
  since the build cannot reach PyPI through this network's TLS proxy without its CA.
- Build: `podman build --isolation chroot --format docker` (chroot isolation needs no OCI
  runtime and shares the host's network, so the loopback server is reachable; docker format
  keeps the HEALTHCHECK).
- Run: real containers, `podman run --runtime runc` with `--ulimit nofile/nproc` lowered to
  what this process may set: crun fails here (no CAP_SYS_RESOURCE to raise rlimits, and it
  refuses the host's hybrid cgroups); runc runs them once the limits are ones it may set.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, need_service
from tests.manager_process import TOKEN_LINE

# True once /healthz (liveness) and /readyz (readiness) are on this branch; until then the
# image's HEALTHCHECK and this test use an unauthenticated route that exists.
LIVENESS = "/healthz"
READINESS = "/readyz"

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_BASE = "python:3.11-slim-bookworm"
LOCAL_BASE = "localhost/space-manager-test-base:bookworm"
DEBIAN_MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Limits this process may set (see the docstring); far above what the test's manager uses.
RUN = ("--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def tools() -> None:
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            need_service(f"{tool} not installed (Debian package {tool}; .ci/run installs it)")


def _debootstrap_base(work: Path) -> str:
    if shutil.which("debootstrap") is None:
        need_service("debootstrap not installed (Debian package; .ci/run installs it)")
    rootfs = work / "rootfs"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv,ca-certificates",
            "bookworm",
            str(rootfs),
            DEBIAN_MIRROR,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    # What slim images leave out too: package caches and lists, docs, man pages, translations.
    for junk in (
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ):
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    with subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE) as tar:
        subprocess.run(
            ["podman", "import", "--change", 'CMD ["python3"]', "-", LOCAL_BASE],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            timeout=300,
        )
    assert tar.returncode == 0
    shutil.rmtree(rootfs, ignore_errors=True)
    return LOCAL_BASE


@pytest.fixture(scope="module")
def base_image(tools, tmp_path_factory) -> Iterator[str]:
    if os.environ.get("DEPLOY_BASE_IMAGE"):
        yield os.environ["DEPLOY_BASE_IMAGE"]
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        if podman("pull", "-q", OFFICIAL_BASE, timeout=20, check=False).returncode == 0:
            yield OFFICIAL_BASE
            return
    yield _debootstrap_base(tmp_path_factory.mktemp("base"))
    podman("rmi", LOCAL_BASE, check=False)  # made for this run: leave no image behind


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Iterator[str]:
    """The runtime and build dependencies as wheels, served on a loopback port."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = project["project"]["dependencies"] + project["build-system"]["requires"]
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), *reqs],
        check=True,
        capture_output=True,
        timeout=300,
    )
    handler = functools.partial(_QuietHandler, directory=str(wheels))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image(base_image: str, wheelhouse: str) -> Iterator[str]:
    tag = f"localhost/space-manager-test:{uuid.uuid4().hex[:8]}"
    dangling_before = set(podman("images", "-q", "-f", "dangling=true").stdout.split())
    started = time.monotonic()
    podman(
        "build",
        "--isolation",
        "chroot",
        "--format",
        "docker",
        "-f",
        str(ROOT / "deploy" / "Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "--build-arg",
        "PIP_NO_INDEX=1",
        "--build-arg",
        f"PIP_FIND_LINKS={wheelhouse}",
        "--build-arg",
        f"PROBE_PATH={LIVENESS}",
        "-t",
        tag,
        str(ROOT),
        timeout=600,
    )
    print(f"image built from {base_image} in {time.monotonic() - started:.0f} s")
    try:
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)
        # ... and the build stage's image this build left untagged
        left = set(podman("images", "-q", "-f", "dangling=true").stdout.split())
        if left - dangling_before:
            podman("rmi", *(left - dangling_before), check=False)


@pytest.mark.timeout(900)  # the first test pays for the module's base image and build
def test_image_is_slim_non_root_and_configured(image: str, record_property):
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    config = info["Config"]
    size_mb = info["Size"] / 1e6
    record_property("image_size_mb", round(size_mb))
    print(f"image size: {size_mb:.0f} MB")
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["space-manager"] and config["Cmd"] == ["serve"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["MANAGER_HOST"] == "0.0.0.0" and env["MANAGER_DATA_DIR"] == "/data"
    assert "/data" in config["Volumes"]
    assert "space-manager-healthcheck" in " ".join(info["Healthcheck"]["Test"])
    assert size_mb < 400, f"{size_mb:.0f} MB"

    listing = podman(
        "run",
        "--rm",
        *RUN,
        "--entrypoint",
        "sh",
        image,
        "-c",
        "ls /app; for c in gcc cc c++ clang; do command -v $c; done; true",
    ).stdout.split()
    # Only what .dockerignore lets in, and no compiler on PATH.
    assert sorted(listing) == [
        "README.md",
        "alembic.ini",
        "manager",
        "migrations",
        "pyproject.toml",
    ]


@pytest.mark.timeout(300)
def test_image_bootstraps_once_then_serves(image: str):
    volume = f"space-manager-test-{uuid.uuid4().hex[:8]}"
    name = f"{volume}-serve"
    port = free_port()
    podman("volume", "create", volume)
    try:
        data = ("-v", f"{volume}:/data")
        first = podman("run", "--rm", *RUN, *data, image, "bootstrap").stdout
        token = TOKEN_LINE.search(first)
        assert token, first
        again = podman("run", "--rm", *RUN, *data, image, "bootstrap")
        assert TOKEN_LINE.search(again.stdout) is None and "nothing created" in again.stderr

        # As deploy/kubernetes runs it: read-only root filesystem, a writable /tmp.
        podman(
            "run", "-d", "--name", name, *RUN, *data, "--read-only", "--tmpfs", "/tmp",
            "-p", f"127.0.0.1:{port}:9000", image, "serve", "--no-bootstrap",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        _wait_ok(f"{url}{READINESS}", name)
        auth = {"Authorization": f"Bearer {token.group(1)}"}
        assert httpx.get(f"{url}/api/v1/version", headers=auth).status_code == 200
        spaces = httpx.get(f"{url}/api/v1/spaces", headers=auth).json()
        assert len(spaces) == 1
        assert podman("healthcheck", "run", name, check=False).returncode == 0

        # SIGTERM (podman stop) ends it cleanly, well inside the stop timeout.
        started = time.monotonic()
        podman("stop", "-t", "30", name, timeout=60)
        assert time.monotonic() - started < 25
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, podman("logs", name).stderr[-3000:]
    finally:
        podman("rm", "-f", name, check=False)
        podman("volume", "rm", "-f", volume, check=False)


def _wait_ok(url: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    logs = podman("logs", name, check=False)
    raise AssertionError(f"{url} not ready: {(logs.stdout + logs.stderr)[-3000:]}")
