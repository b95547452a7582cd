"""The manager's own HTTP API as an OpenAPI 3.1 document: `openapi.yaml` beside this file.

Kept by hand as a static file because the endpoints are thin Starlette functions with
nothing to derive a schema from, and because the shapes are the clients' contract
(space-api.md), not whatever the code happens to build. tests/web/test_openapi.py keeps the
file and the code in step: every route the app registers is described and nothing else,
schemathesis checks the real responses against these shapes, and the numbers that come from
code (plan limits, the description length) must match.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

import yaml  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import Response

from manager import __version__

JSON = dict[str, Any]

# A proxied route accepts every method; these are the ones the document lists for it.
PROXY_METHODS = ("get", "put", "post", "delete", "patch")


@functools.cache
def _loaded() -> JSON:
    text = resources.files("manager.web").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document: JSON = yaml.safe_load(text)
    document["info"]["version"] = __version__
    return document


def build_document() -> JSON:
    """A fresh copy each call, so a caller may change it without touching anyone else's."""
    return copy.deepcopy(_loaded())


@functools.cache
def _rendered() -> bytes:
    return json.dumps(_loaded(), separators=(",", ":")).encode()


async def serve(_request: Request) -> Response:
    """Public on purpose: the document says what the API is, not anything about a Space."""
    return Response(_rendered(), media_type="application/json")
