"""Runtime configuration, read once from the environment and the command line.

Owns the names and defaults of every setting so the CLI, the web app and the tests agree;
it must not open files or sockets beyond resolving paths.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a number of seconds, got {raw!r}") from exc
    if not 0 <= value < float("inf"):
        raise SystemExit(f"{name} must be zero or more seconds, got {raw!r}")
    return value


def _choice_env(name: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, "").strip().lower() or choices[0]
    if raw not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything the manager needs to know about its deployment."""

    data_dir: Path = Path("./data")
    database_url: str | None = None
    secret: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    public_url: str | None = None
    hub_limit: int = 0
    replica_id: str | None = None
    log_level: str = "info"
    healthy_after_s: float = 15.0
    load_flush_s: float = 60.0
    channel_open_timeout_s: float = 10.0
    tunnel_port: int | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    store_max_bytes: int = 1024 * 1024 * 1024
    max_tunnels_per_source: int = 1000
    max_requests_per_hub: int = 256
    # Admission shaping (manager/hubs/admission.py): how many tunnels check keys and register
    # at once, how many may wait for that, and for how long before a 503 (WebSocket: 1013).
    max_admissions: int = 16
    admission_queue: int = 20_000
    admission_wait_s: float = 60.0
    loop: str = "auto"
    fast_lane: bool = True
    # Several replicas (manager.replicas): where the others reach this one, and the lease.
    peer_url: str | None = None
    peer_port: int | None = None
    peer_secret: str | None = None
    lease_s: float = 10.0
    # Operations (health, drain, metrics, logs): see manager/services/drain.py and the README.
    log_format: str = "text"  # or "json": one object per line
    drain_grace_s: float = 30.0  # a draining Hub's requests in flight get this long to end
    drain_window_s: float = 10.0  # tunnel closes are spread over this many seconds
    metrics_port: int | None = None  # /metrics without a token, for in-cluster scraping

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            data_dir=Path(env.get("MANAGER_DATA_DIR", "./data")),
            database_url=env.get("MANAGER_DATABASE_URL") or None,
            secret=env.get("MANAGER_SECRET") or None,
            host=env.get("MANAGER_HOST", DEFAULT_HOST),
            port=_int_env("MANAGER_PORT", DEFAULT_PORT),
            public_url=env.get("MANAGER_PUBLIC_URL") or None,
            hub_limit=_int_env("MANAGER_HUB_LIMIT", 0),
            replica_id=env.get("MANAGER_REPLICA_ID") or None,
            log_level=env.get("MANAGER_LOG_LEVEL", "info").lower(),
            tunnel_port=_int_env("MANAGER_TUNNEL_PORT", 0) or None,
            ssl_certfile=env.get("MANAGER_SSL_CERTFILE") or None,
            ssl_keyfile=env.get("MANAGER_SSL_KEYFILE") or None,
            store_max_bytes=_int_env("MANAGER_STORE_MAX_BYTES", 1024 * 1024 * 1024),
            max_tunnels_per_source=_int_env("MANAGER_MAX_TUNNELS_PER_SOURCE", 1000),
            max_requests_per_hub=_int_env("MANAGER_MAX_REQUESTS_PER_HUB", 256),
            max_admissions=_int_env("MANAGER_MAX_ADMISSIONS", 16),
            admission_queue=_int_env("MANAGER_ADMISSION_QUEUE", 20_000),
            admission_wait_s=_float_env("MANAGER_ADMISSION_WAIT_S", 60.0),
            loop=_choice_env("MANAGER_LOOP", ("auto", "asyncio", "uvloop")),
            fast_lane=_choice_env("MANAGER_FAST_LANE", ("on", "off")) == "on",
            peer_url=env.get("MANAGER_PEER_URL") or None,
            peer_port=_int_env("MANAGER_PEER_PORT", 0) or None,
            peer_secret=env.get("MANAGER_PEER_SECRET") or None,
            lease_s=float(_int_env("MANAGER_REPLICA_LEASE_S", 10)),
            log_format=_choice_env("MANAGER_LOG_FORMAT", ("text", "json")),
            drain_grace_s=_float_env("MANAGER_DRAIN_GRACE_S", 30.0),
            drain_window_s=_float_env("MANAGER_DRAIN_WINDOW_S", 10.0),
            metrics_port=_int_env("MANAGER_METRICS_PORT", 0) or None,
        )

    def with_overrides(self, **changes: object) -> Settings:
        clean = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **clean)  # type: ignore[arg-type]

    @property
    def replica(self) -> str:
        """Stable across restarts, so a restarted replica can release the Hubs it held."""
        return self.replica_id or f"{socket.gethostname()}:{self.port}"

    @property
    def effective_peer_url(self) -> str:
        """Where other replicas forward requests for the Hubs this one holds."""
        if self.peer_url:
            return self.peer_url.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        scheme = "https" if self.ssl_certfile else "http"  # TLS applies to the peer port too
        return f"{scheme}://{host}:{self.peer_port or self.port}"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.data_dir / 'manager.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.ssl_certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"


def normalise_database_url(url: str) -> str:
    """Accept the URLs operators usually have and pick the async driver for them."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url
