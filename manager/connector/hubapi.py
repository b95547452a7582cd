"""The local Hub's REST API as the connector polls it: load, Sequences, instances, topics.

Every failure (refused, timed out, not a 200, not JSON, too big) becomes one LocalHubError so
the callers have one thing to handle: skip this LOAD or this poll and try again later. Bodies
are read with a size cap so a confused Hub cannot make us buffer without bound. Keep-alive
connections expire before Node's 5 s server timeout, so a reused socket is never stale.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpcore

from manager.connector.errors import LocalHubError
from manager.connector.feed import HubSnapshot
from manager.connector.options import HubAddress

__all__ = ["LocalHub"]

MAX_BODY = 32 * 1024 * 1024
TIMEOUT_S = 5.0


class LocalHub:
    def __init__(self, address: HubAddress, timeout: float = TIMEOUT_S) -> None:
        self.address = address
        self.timeout = timeout
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=4, keepalive_expiry=2.0, retries=1
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def get_json(self, path: str) -> Any:
        """`GET <hub>/api/v1/<path>` → the parsed JSON body."""
        url = f"{self.address.url}/api/v1/{path}"
        extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)}
        try:
            async with asyncio.timeout(self.timeout * 2):
                async with self._pool.stream(
                    "GET", url, headers={"Accept": "application/json"}, extensions=extensions
                ) as resp:
                    if resp.status != 200:
                        raise LocalHubError(f"GET /api/v1/{path} answered {resp.status}")
                    body = bytearray()
                    async for chunk in resp.aiter_stream():
                        body += chunk
                        if len(body) > MAX_BODY:
                            raise LocalHubError(f"GET /api/v1/{path}: body over {MAX_BODY} bytes")
        except httpcore.ConnectError as exc:
            raise LocalHubError(
                f"not reachable at {self.address.url} ({exc or 'refused'})"
            ) from None
        except (httpcore.TimeoutException, TimeoutError):
            raise LocalHubError(f"GET /api/v1/{path} timed out") from None
        except httpcore.NetworkError as exc:
            raise LocalHubError(f"GET /api/v1/{path} failed: {exc!r}") from None
        except httpcore.ProtocolError as exc:
            raise LocalHubError(f"GET /api/v1/{path}: not HTTP ({exc})") from None
        try:
            return json.loads(body)
        except ValueError:
            raise LocalHubError(f"GET /api/v1/{path} did not answer JSON") from None

    async def load_check(self) -> Any:
        return await self.get_json("load-check")

    async def snapshot(self) -> HubSnapshot:
        sequences, instances, topics = await asyncio.gather(
            self.get_json("sequences"), self.get_json("instances"), self.get_json("topics")
        )
        return HubSnapshot.from_api(sequences, instances, topics)
