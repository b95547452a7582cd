"""Space-wide topics: one broadcast per topic name that every producer (a providing Hub, an
API client POSTing to the Space) writes into and every consumer (a requiring Hub, an API
client GETting from the Space) reads from (spec §6, space-api.md S11–S13).

Back-pressure, not buffering: each consumer has a small bounded queue and a producer waits
until every consumer took its chunk, so the slowest reader paces the topic as a Hub topic
does. NDJSON producers are re-cut on line boundaries so two producers never interleave
half lines.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from manager.hubs.state import TOPIC_TYPES
from manager.services.errors import Invalid, ServiceError

TOPIC_NAME = re.compile(r"^[\\a-zA-Z0-9_+-]+$")
LINE_TYPES = frozenset({"application/x-ndjson", "text/x-ndjson"})
QUEUE_CHUNKS = 16
API = "api"
RELAYED = "replica:"  # origin prefix of chunks another replica's board relayed here


class WrongContentType(ServiceError):
    status = 415


def check_name(name: str) -> str:
    if not TOPIC_NAME.match(name) or len(name) > 200:
        raise Invalid("Topic id incorrect format")
    return name


def check_type(content_type: str | None, default: str) -> str:
    value = (content_type or default).split(";")[0].strip().lower()
    if value not in TOPIC_TYPES:
        raise Invalid("Unsupported content-type")
    return value


@dataclass(eq=False)
class Consumer:
    """One reader of a topic; `skip` is a producer whose chunks it must not get back.
    A `local_only` reader (another replica relaying this board) gets only what this
    replica's own producers wrote, so no chunk travels back to where it came from."""

    skip: str | None = None
    local_only: bool = False
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_CHUNKS))


@dataclass(eq=False)
class SpaceTopic:
    name: str
    content_type: str
    consumers: set[Consumer] = field(default_factory=set)
    producers: dict[str, int] = field(default_factory=dict)

    def subscribe(self, skip: str | None = None, *, local_only: bool = False) -> Consumer:
        consumer = Consumer(skip=skip, local_only=local_only)
        self.consumers.add(consumer)
        return consumer

    def unsubscribe(self, consumer: Consumer) -> None:
        self.consumers.discard(consumer)

    async def publish(self, chunk: bytes, origin: str) -> None:
        relayed = origin.startswith(RELAYED)
        for consumer in list(self.consumers):
            if consumer.skip == origin or (relayed and consumer.local_only):
                continue
            if consumer in self.consumers:
                await consumer.queue.put(chunk)

    async def end_api_readers(self) -> None:
        """`x-end-stream: true` from an API producer ends the Space-level readers."""
        for consumer in list(self.consumers):
            if consumer.skip is None:
                await consumer.queue.put(None)

    async def feed(self, chunks: AsyncIterator[bytes], origin: str) -> int:
        """Publish a producer's stream (line-aligned for NDJSON topics); returns its size."""
        self.producers[origin] = self.producers.get(origin, 0) + 1
        total = 0
        pending = b""
        try:
            async for chunk in chunks:
                total += len(chunk)
                if self.content_type in LINE_TYPES:
                    pending += chunk
                    cut = pending.rfind(b"\n") + 1
                    if cut:
                        await self.publish(pending[:cut], origin)
                        pending = pending[cut:]
                else:
                    await self.publish(chunk, origin)
            if pending:
                await self.publish(pending + b"\n", origin)
        finally:
            self.producers[origin] -= 1
            if not self.producers[origin]:
                del self.producers[origin]
        return total


async def drain(consumer: Consumer) -> AsyncIterator[bytes]:
    while (chunk := await consumer.queue.get()) is not None:
        yield chunk


class TopicBoard:
    """The topics of every Space, created on first use."""

    def __init__(self) -> None:
        self._topics: dict[tuple[str, str], SpaceTopic] = {}

    def get(self, space_id: str, name: str) -> SpaceTopic | None:
        return self._topics.get((space_id, name))

    def in_space(self, space_id: str) -> list[SpaceTopic]:
        return [t for (sid, _), t in self._topics.items() if sid == space_id]

    def read_by_api(self) -> list[tuple[str, SpaceTopic]]:
        """(Space, topic) for each topic a Space API client is reading here now (not a
        Hub's push, not another replica's relay)."""
        return [
            (sid, t)
            for (sid, _), t in self._topics.items()
            if any(c.skip is None and not c.local_only for c in t.consumers)
        ]

    def open(self, space_id: str, name: str, content_type: str, known: str | None) -> SpaceTopic:
        """The topic, checking that `content_type` matches what it already carries."""
        topic = self._topics.get((space_id, name))
        fixed = topic.content_type if topic is not None else known
        if fixed is not None and fixed != content_type:
            raise WrongContentType(f"Acceptable Content-Type for {name} is {fixed}")
        if topic is None:
            topic = SpaceTopic(name, content_type)
            self._topics[(space_id, name)] = topic
        return topic
