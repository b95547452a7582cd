"""`space-manager serve --workers N`: N processes on one port, replicas of each other.

Each worker is an ordinary `serve` process with its own replica id, its listening socket
bound with SO_REUSEPORT (the kernel spreads new connections, and so Hub tunnels, over the
workers) and its peer route on an ephemeral loopback port it advertises as its peer URL.
They meet in PostgreSQL like replicas on different machines do, which is why SQLite (one
process) refuses N > 1. This parent only starts them, restarts one that dies, and passes
SIGTERM/SIGINT on (each worker then drains as a lone replica would).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from manager.config import Settings

log = logging.getLogger("manager")

WORKER_ENV = "MANAGER_WORKER"  # set in a worker's environment: bind with SO_REUSEPORT
RESTART_DELAY_S = 1.0


def check_workers(settings: Settings, workers: int) -> None:
    if workers < 1:
        raise SystemExit("--workers must be 1 or more")
    if workers > 1 and not settings.effective_database_url.startswith("postgresql"):
        raise SystemExit(
            f"--workers {workers} needs PostgreSQL (MANAGER_DATABASE_URL): the workers are "
            "replicas sharing one database, and SQLite serves one process"
        )


def worker_env(settings: Settings, index: int) -> dict[str, str]:
    """A worker's settings: the parent's, by environment (the command line's included)."""
    env = dict(os.environ)
    env.update(
        {
            WORKER_ENV: str(index),
            "MANAGER_REPLICA_ID": f"{settings.replica}-w{index}",
            "MANAGER_DATA_DIR": str(settings.data_dir),
            "MANAGER_HOST": settings.host,
            "MANAGER_PORT": str(settings.port),
            "MANAGER_LOG_LEVEL": settings.log_level,
            "MANAGER_PUBLIC_URL": settings.effective_public_url,
        }
    )
    for name, value in (
        ("MANAGER_DATABASE_URL", settings.database_url),
        ("MANAGER_SSL_CERTFILE", settings.ssl_certfile),
        ("MANAGER_SSL_KEYFILE", settings.ssl_keyfile),
        ("MANAGER_TUNNEL_PORT", str(settings.tunnel_port or "")),
    ):
        if value:
            env[name] = value
    env.pop("MANAGER_PEER_URL", None)  # each worker advertises its own loopback port
    env.pop("MANAGER_PEER_PORT", None)
    return env


def run_workers(settings: Settings, workers: int) -> int:
    """Start the workers and keep them running until SIGTERM or SIGINT."""
    command = [sys.executable, "-m", "manager", "serve", "--no-bootstrap"]  # the parent did
    procs: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def start(index: int) -> None:
        procs[index] = subprocess.Popen(command, env=worker_env(settings, index))

    def stop(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(sig)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(workers):
        start(index)
    log.info("%d workers on %s:%d", workers, settings.host, settings.port)
    while True:
        time.sleep(0.2)
        for index, proc in list(procs.items()):
            code = proc.poll()
            if code is None:
                continue
            if stopping:
                continue
            log.warning("worker %d exited with %d; starting it again", index, code)
            time.sleep(RESTART_DELAY_S)
            start(index)
        if stopping and all(p.poll() is not None for p in procs.values()):
            return max((p.returncode or 0) for p in procs.values())
