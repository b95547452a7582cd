"""What the Panel's pages show, read from SQL and the live registry; no HTTP, no templates.

The Hub list is filtered and paged in SQL (one COUNT and one LIMIT/OFFSET read), and only
the Hubs on the page are looked up in the registry, so a page costs the same at 10,000 Hubs
as at ten; the API's `/list` renders every Hub, which a browser polling every few seconds
should not ask for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from manager.db import repo
from manager.db.models import Hub
from manager.services import plans
from manager.services.errors import NotFound
from manager.services.space_hubs import AnyHub, SpaceHubs
from manager.services.space_view import iso

PAGE_SIZE = 25
MAX_QUERY = 200


@dataclass(frozen=True, slots=True)
class HubLine:
    """One Hub as a row of the Space page."""

    id: str
    description: str
    tags: list[str]
    self_hosted: bool
    connected: bool
    healthy: bool
    created: str | None
    last_connected: str | None
    last_disconnected: str | None
    disconnect_reason: str | None
    load: str
    sequences: int
    instances: int


@dataclass(frozen=True, slots=True)
class HubPage:
    lines: list[HubLine]
    total: int
    page: int
    pages: int
    query: str


@dataclass(frozen=True, slots=True)
class HubDetail:
    line: HubLine
    sequences: list[dict[str, Any]] = field(default_factory=list)
    instances: list[dict[str, Any]] = field(default_factory=list)
    topics: list[dict[str, Any]] = field(default_factory=list)
    load: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LimitLine:
    """One limit of the Space's plan in words, as a row of the "Plan and limits" card."""

    key: str
    label: str
    usage: str
    reached: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class PlanCard:
    plan: str
    lines: list[LimitLine]


_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(n: int) -> str:
    """`512 bytes`, `4.9 KiB`, `1 GiB`."""
    if n < 1024:
        return f"{n} byte" if n == 1 else f"{n} bytes"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
    raise AssertionError("unreachable")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_NOTES = {"plan": "", "space": "set for this Space"}


def _usage_line(key: str, label: str, usage: dict[str, Any], noun: str) -> LimitLine:
    used, limit, source = int(usage.get("used") or 0), usage.get("limit"), usage["source"]
    note = _NOTES.get(source, f"set by {source}")
    if limit is None:
        words = human_bytes(used) if key == plans.STORE else _count(used, noun)
        return LimitLine(key, label, f"{words}, {plans.UNLIMITED}", note=note)
    if key == plans.STORE:
        words = f"{human_bytes(used)} of {human_bytes(limit)}"
    else:
        words = f"{used} of {_count(limit, noun)}"
    return LimitLine(key, label, words, reached=used >= limit, note=note)


def plan_card(usage: dict[str, Any]) -> PlanCard:
    """The Space's limits with their usage (`plans.space_usage`, as `GET …/config` shows
    them) in words: "2 of 5 Hubs", "0 bytes of 4.9 KiB", "unlimited"."""
    rate, burst = usage[plans.RATE]["limit"], usage[plans.BURST]["limit"]
    if rate is None:
        requests = plans.UNLIMITED
    else:  # without a burst of its own, a token's bucket holds one second's worth
        requests = f"{rate} a second, bursts of up to {burst or rate}"
    lines = [
        _usage_line(plans.HUBS, "Hubs connected at once", usage[plans.HUBS], "Hub"),
        _usage_line(plans.STORE, "Store", usage[plans.STORE], "byte"),
        _usage_line(plans.SPACES, "Spaces in the organization", usage[plans.SPACES], "Space"),
        LimitLine(plans.RATE, "Requests to Hubs per API token", requests),
    ]
    return PlanCard(plan=usage["plan"], lines=lines)


def describe_load(load: dict[str, Any] | None) -> str:
    """`CPU 12% · memory 1.2 of 7.8 GiB` from a Hub's LOAD report."""
    if not load:
        return ""
    parts = []
    cpu = load.get("currentLoad")
    if isinstance(cpu, int | float) and not isinstance(cpu, bool):
        parts.append(f"CPU {cpu:.0f}%")
    used, free = load.get("memUsed"), load.get("memFree")
    if isinstance(used, int | float) and isinstance(free, int | float) and used + free > 0:
        parts.append(f"memory {used / 2**30:.1f} of {(used + free) / 2**30:.1f} GiB")
    return " · ".join(parts)


def _line(row: Any, live: AnyHub | None, registry: SpaceHubs, now: float) -> HubLine:
    return HubLine(
        id=row.hub_id,
        description=row.description or "",
        tags=[str(t) for t in row.tags or []],
        self_hosted=bool(row.self_hosted),
        connected=live is not None,
        healthy=bool(live and registry.healthy(live, now)),
        created=iso(row.created_ms),
        last_connected=iso(row.last_connected_ms),
        last_disconnected=iso(row.last_disconnected_ms),
        disconnect_reason=row.disconnect_reason if live is None else None,
        load=describe_load(live.state.load) if live else "",
        sequences=len(live.state.sequences) if live else 0,
        instances=len(live.state.instances) if live else 0,
    )


def _matching(space_id: str, query: str) -> Any:
    where = Hub.space_id == space_id
    if not query:
        return where
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return where & or_(
        Hub.hub_id.ilike(pattern, escape="\\"),
        Hub.description.ilike(pattern, escape="\\"),
        cast(Hub.tags, String).ilike(pattern, escape="\\"),
    )


async def hub_page(
    s: AsyncSession,
    registry: SpaceHubs,
    space_id: str,
    query: str = "",
    page: int = 1,
    size: int = PAGE_SIZE,
) -> HubPage:
    """The Hubs whose id, description or tags contain `query`, page `page` (from 1)."""
    query = query.strip()[:MAX_QUERY].replace("\x00", "")
    where = _matching(space_id, query)
    total = int(await s.scalar(select(func.count()).select_from(Hub).where(where)) or 0)
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    rows = (
        await s.execute(
            select(*repo.LISTING_COLUMNS)
            .where(where)
            .order_by(Hub.created_ms, Hub.id)
            .offset((page - 1) * size)
            .limit(size)
        )
    ).all()
    now = time.monotonic()
    lines = [_line(r, registry.get(space_id, r.hub_id), registry, now) for r in rows]
    return HubPage(lines=lines, total=total, page=page, pages=pages, query=query)


async def hub_detail(s: AsyncSession, registry: SpaceHubs, space_id: str, hub_id: str) -> HubDetail:
    live = registry.get(space_id, hub_id)  # before the row, as the API's hub_info does
    row = await repo.get_hub(s, space_id, hub_id)
    if row is None:
        raise NotFound(f"Hub {hub_id} is not in this Space (it may have been deleted)")
    line = _line(row, live, registry, time.monotonic())
    if live is None:
        return HubDetail(line=line)
    topics = [
        {
            "name": t.name,
            "contentType": t.content_type,
            "provides": t.provides,
            "requires": t.requires,
        }
        for t in sorted(live.state.topics.values(), key=lambda t: t.name)
    ]
    return HubDetail(
        line=line,
        sequences=live.state.sequence_list(),
        instances=live.state.instance_list(),
        topics=topics,
        load=live.state.load,
    )
