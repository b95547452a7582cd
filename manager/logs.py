"""How the manager's log lines look, and the request and Hub they belong to.

`configure` is the one place logging is set up (the `serve` command calls it): `text` is the
classic `time LEVEL logger: message` line, `json` one object per line for log collectors.
uvicorn is started without a logging config of its own, so its lines (access log included)
go through the same handler and format.

The request id and the Hub a line is about travel in context variables, not in arguments:
the proxy and the tunnel code set them once and every line logged below them (in the same
task, or tasks it starts) carries them, with no change to the many `log.info` calls. Only
ids are carried here, never header values: secrets must not reach a log line.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import time
from contextvars import ContextVar

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
hub_context: ContextVar[tuple[str, str] | None] = ContextVar("hub_context", default=None)

# A client's own id is kept when it looks like one (UUIDs, trace ids, ULIDs); anything else
# could be used to forge or garble log lines, so it is replaced.
_SANE_ID = re.compile(r"^[A-Za-z0-9._:+=/-]{1,128}$")
_PREFIX = secrets.token_hex(4)
_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """Unique per process run (a random prefix and a counter): cheaper than a UUID per
    request, and still unique across replicas and restarts in practice."""
    return f"{_PREFIX}-{next(_COUNTER):x}"


def accept_request_id(offered: bytes | None) -> str:
    """The client's `x-request-id` if it is sane, else a new one."""
    if offered:
        text = offered.decode("latin-1")
        if _SANE_ID.match(text):
            return text
    return new_request_id()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the ids known here."""

    def __init__(self, replica: str) -> None:
        super().__init__()
        self.replica = replica

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "replica": self.replica,
        }
        rid = request_id.get()
        if rid is not None:
            line["request_id"] = rid
        hub = hub_context.get()
        if hub is not None:
            line["space"], line["hub"] = hub
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _utc(created: float) -> str:
    whole = int(created)
    millis = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def configure(level: str, fmt: str = "text", replica: str = "") -> None:
    """Set the root logger's level and its one handler (stderr) in the chosen format."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(replica))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
