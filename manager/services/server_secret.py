"""The server secret that access keys are derived from.

Taken from configuration when given; otherwise generated once into the data dir with 0600
permissions, because losing it invalidates every access key (and leaking it reveals them).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

SECRET_FILE = "server-secret"


def load_or_create_secret(data_dir: Path, configured: str | None) -> bytes:
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    if path.exists():
        value = path.read_text().strip()
        if len(value) < 32:
            raise SystemExit(f"{path} is too short to be a server secret")
        return value.encode()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value.encode()


def rotate_secret(data_dir: Path) -> None:
    """Replace the generated secret (atomically, 0600). Every key derived from the old one
    stops working: callers must revoke them and tell the operator."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    tmp = data_dir / f".{SECRET_FILE}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48) + "\n")
    os.replace(tmp, path)
