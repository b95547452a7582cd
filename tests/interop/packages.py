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
    return node_package(name, INDEX_JS, version)


def write_hello_package(path: Path) -> Path:
    path.write_bytes(hello_package())
    return path


def node_package(name: str, index_js: str, version: str = "1.0.0") -> bytes:
    """A one-file Node Sequence package (same deterministic bytes as `hello_package`)."""
    files = {
        "package.json": json.dumps(
            {"name": name, "version": version, "main": "index.js", "engines": {"node": ">=16"}}
        ).encode(),
        "index.js": index_js.encode(),
    }
    buf = io.BytesIO()
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


# A producer of topic `counts` (application/x-ndjson): `{"n": 0, "p": TAG}` … up to COUNT-1
# (start arguments COUNT, default 10,000, and TAG, default ""; with PACE > 0 it sleeps 1 ms
# every PACE lines); then it stays alive, as a long-lived producer does. STH 1.0.1 takes
# the topic and its content type from the output stream's `topic` and `contentType` (a
# start's `outputTopic` alone has no content type, and the Hub ignores it).
COUNTER_JS = """\
const { Readable } = require("stream");
module.exports = function (_input, count, tag, pace) {
    const total = Number(count) || 10000;
    const p = String(tag || "");
    const every = Number(pace) || 0;
    async function* numbers() {
        for (let n = 0; n < total; n++) {
            yield { n, p };
            if (every && n % every === 0) await new Promise((res) => setTimeout(res, 1));
        }
        await new Promise(() => {});
    }
    return Object.assign(Readable.from(numbers()), {
        topic: "counts",
        contentType: "application/x-ndjson",
    });
};
"""

# A consumer of topic `counts`: its input is the topic, its output the same objects.
PASS_THROUGH_JS = """\
module.exports = [
    { requires: "counts", contentType: "application/x-ndjson" },
    function (input) {
        return input;
    },
];
"""
