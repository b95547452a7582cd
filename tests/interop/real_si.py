"""Helpers for the `si` 1.0.1 tests against real STH 1.0.1 Hubs (`test_real_si_*.py`).

`si` 1.0.1 prints what the JS client returned: a Sequence or an Instance it created is a
`SequenceClient` / `InstanceClient` whose id is in `_id` (`{"_id": …, "host": {…},
"sequenceURL": …}`); lists and infos are the Hub's own JSON.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

from tests.interop.sth import Si
from tests.running import RunningManager

# A Sequence with every stream busy: first its start config and arguments on stdout, then
# every 200 ms a line on its output (`tick n`, plain text, not JSON-serialized: the output is
# a text stream), stdout, stderr and log; input and stdin echoed to output and stdout; the
# event `ping` answered with `pong`.
ECHO_JS = """\
const { PassThrough } = require("stream");

module.exports = async function (input, ...args) {
    const ctx = this;
    process.stdout.write(`config ${JSON.stringify(ctx.config ?? {})}\\n`);
    process.stdout.write(`args ${JSON.stringify(args)}\\n`);
    const out = new PassThrough({ encoding: "utf8" });
    let i = 0;
    setInterval(() => {
        out.write(`tick ${i}\\n`);
        process.stdout.write(`stdout ${i}\\n`);
        process.stderr.write(`stderr ${i}\\n`);
        ctx.logger.info(`log ${i}`);
        i++;
    }, 200);
    ctx.on("ping", (message) => ctx.emit("pong", `pong:${message}`));
    input.on("data", (chunk) => out.write(`input:${String(chunk)}`));
    process.stdin.on("data", (chunk) => process.stdout.write(`stdin:${String(chunk)}`));
    return out;
};
"""


def echo_files(name: str = "echo-seq", version: str = "1.0.0") -> dict[str, bytes]:
    package = {"name": name, "version": version, "main": "index.js", "engines": {"node": ">=16"}}
    return {"package.json": json.dumps(package).encode(), "index.js": ECHO_JS.encode()}


def write_echo_package(path: Path, version: str = "1.0.0") -> Path:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for fname, data in echo_files(version=version).items():
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def write_echo_dir(path: Path) -> Path:
    """The same Sequence as a folder, as `si seq deploy <dir>` takes it."""
    path.mkdir(parents=True, exist_ok=True)
    for fname, data in echo_files().items():
        (path / fname).write_bytes(data)
    return path


async def terminal(si: Si, root: Path, hub_id: str | None = None) -> Si:
    """The same user in another terminal, for `si` commands that run at the same time.

    si 1.0.1 rewrites its profile (`~/.si/profiles/<name>.json`, `~/.si/si-config.json`) and
    session file on every start, without a lock: two `si` starting together under one HOME
    can read a half-written file and die with "Unexpected end of JSON input". So a terminal
    gets a copy of the profile in a HOME of its own, and its own session (under TMPDIR),
    where the Space and Hub are selected again (`hub_id`, else si's default: the first
    healthy Hub)."""
    other = copy.copy(si)
    home, tmp = root / "home", root / "tmp"
    shutil.copytree(Path(si.env["HOME"]) / ".si", home / ".si")
    tmp.mkdir(parents=True, exist_ok=True)
    other.env = {**si.env, "HOME": str(home), "TMPDIR": str(tmp)}
    if hub_id is not None:
        await other.run("hub", "use", hub_id)
    return other


async def space_get(manager: RunningManager, path: str) -> Any:
    """GET on the manager's Space API of the default Space (what the Space then shows)."""
    resp = await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/{path}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def json_lines(lines: list[str]) -> list[Any]:
    return [json.loads(line) for line in lines]
