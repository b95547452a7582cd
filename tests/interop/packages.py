"""Builds small Sequence packages (gzip tar with package.json at the root) for client tests."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

INDEX_JS = """\
module.exports = async function* (input) {
    for (let i = 0; i < 1000; i++) {
        yield JSON.stringify({ tick: i }) + "\\n";
        await new Promise((res) => setTimeout(res, 200));
    }
};
"""


def hello_package(name: str = "hello-seq", version: str = "1.0.0") -> bytes:
    files = {
        "package.json": json.dumps(
            {"name": name, "version": version, "main": "index.js", "engines": {"node": ">=16"}}
        ).encode(),
        "index.js": INDEX_JS.encode(),
    }
    buf = io.BytesIO()
    # mtime=0 everywhere: the same package gives the same bytes, whenever it is built.
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for fname, data in files.items():
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_hello_package(path: Path) -> Path:
    path.write_bytes(hello_package())
    return path
