"""Runs the real `si` 0.26.1 (npm @scramjet/cli) against a manager, isolated per test."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.interop.peer import NODE_DIR, require_node

SI = NODE_DIR / "node_modules" / ".bin" / "si"


class Si:
    def __init__(self, home: Path, api_url: str, token: str) -> None:
        require_node()
        self.env = {**os.environ, "HOME": str(home / "home"), "TMPDIR": str(home / "tmp")}
        for key in ("SI_CONFIG", "SI_CONFIG_PATH"):
            self.env.pop(key, None)
        Path(self.env["HOME"], ".si").mkdir(parents=True, exist_ok=True)
        Path(self.env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
        profile = {"middlewareApiUrl": f"{api_url}/api/v1", "env": "production", "token": token}
        self.run("config", "set", "json", json.dumps(profile))
        self.run("config", "set", "log", "--format", "json")

    def run(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(SI), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert proc.returncode == 0, f"si {' '.join(args)}: {proc.stderr}"
        return proc

    def json(self, *args: str, timeout: float = 60) -> Any:
        out = self.run(*args, timeout=timeout).stdout
        return json.loads(out)
