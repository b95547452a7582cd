"""Plans: named sets of limits, the plan an organization is on, a Space's own overrides.

A platform admin sells tiers the way the hosted platform does ("connecting more than 1
self-hosted Hub requires a subscription upgrade"): each organization is on one plan, and a
Space may carry its own value for a per-Space limit. This module owns the rules (which
values are valid, which limit applies, how a refusal is worded) over `manager.db.repo`; it
reads SQL, so the hot paths (Hub admission, the rate limiter) use the in-memory copy in
`manager.services.quotas` instead. The five access keys per Space are not a plan limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from manager.common import now_ms, org_id_of
from manager.db import repo
from manager.db.models import Plan
from manager.services.access_keys import MAX_LIVE_KEYS
from manager.services.errors import Conflict, Invalid, LimitExceeded, NotFound

DEFAULT_PLAN = "default"
HUBS = "hubsPerSpace"
SPACES = "spacesPerOrg"
STORE = "storeBytesPerSpace"
RATE = "requestsPerSecond"
BURST = "burst"
# API name -> SQL column; the order is the order they are shown in.
COLUMNS: Final = {
    HUBS: "hubs_per_space",
    SPACES: "spaces_per_org",
    STORE: "store_bytes_per_space",
    RATE: "requests_per_second",
    BURST: "burst",
}
SPACE_LIMITS = (HUBS, STORE)  # the ones a Space may override
LEAST = {RATE: 1, BURST: 1}  # 0 Hubs or Spaces is a valid limit; 0 requests/s is not
MOST = {HUBS: 10**9, SPACES: 10**9, STORE: 2**62, RATE: 10**9, BURST: 10**9}
UNLIMITED = "unlimited"
FROM_PLAN = "plan"  # a Space override's value meaning "no override"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,79}$"
_NAME = re.compile(NAME_PATTERN)


class _Inherit:
    def __repr__(self) -> str:
        return FROM_PLAN


INHERIT: Final = _Inherit()
Value = int | None  # None: unlimited
Change = int | None | _Inherit


@dataclass(frozen=True, slots=True)
class PlanLimits:
    name: str
    limits: Mapping[str, Value]

    def get(self, key: str) -> Value:
        return self.limits.get(key)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, **{k: self.limits.get(k) for k in COLUMNS}}


BUILT_IN_DEFAULT = PlanLimits(DEFAULT_PLAN, {})


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit in force: its value (None: unlimited) and where it comes from."""

    name: str
    value: Value
    plan: str
    source: str  # "plan", "space" (the Space's own value) or a setting's name

    def allows(self, used: int, more: int = 1) -> bool:
        return self.value is None or used + more <= self.value

    def under_ceiling(self, ceiling: int, setting: str) -> Limit:
        """The tighter of this and a global setting (0: the setting sets no limit)."""
        if ceiling > 0 and (self.value is None or ceiling < self.value):
            return Limit(self.name, ceiling, self.plan, setting)
        return self

    def describe(self) -> str:
        if self.source == "plan":
            return f"{self.name} {self.value} of plan '{self.plan}'"
        if self.source == "space":
            return f"{self.name} {self.value} set for this Space (plan '{self.plan}')"
        return f"{self.name} {self.value} set by {self.source}"

    def refused(self, message: str, status: int, used: int) -> LimitExceeded:
        return LimitExceeded(
            f"{message}: the limit is {self.describe()}",
            status,
            plan=self.plan,
            limit=self.name,
            max=self.value,
            used=used,
            source=self.source,
        )

    def as_json(self, used: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.value, "source": self.source}
        if used is not None:
            out["used"] = used
        return out


def effective(plan: PlanLimits, overrides: Mapping[str, Value], name: str) -> Limit:
    if name in overrides:
        return Limit(name, overrides[name], plan.name, "space")
    return Limit(name, plan.get(name), plan.name, "plan")


# values as operators and admin tokens write them


def parse_value(name: str, raw: object, *, space: bool = False, text: bool = False) -> Change:
    """A number, `"unlimited"` (or JSON null for a plan), `"plan"` for a Space. With `text`
    (the CLI) also `"12"` and any case; JSON takes exactly what the API document says."""
    if raw is None and not space:
        return None
    if isinstance(raw, str):
        word = raw.strip().lower() if text else raw
        if word == UNLIMITED:
            return None
        if space and word == FROM_PLAN:
            return INHERIT
        if text and word.isascii() and word.isdigit():
            raw = int(word)
    if isinstance(raw, float) and raw.is_integer():  # JSON's 60.0 is the integer 60
        raw = int(raw)
    if isinstance(raw, int) and not isinstance(raw, bool):
        least, most = LEAST.get(name, 0), MOST[name]
        if least <= raw <= most:
            return raw
        raise Invalid(f"{name} must be between {least} and {most}, or {UNLIMITED}")
    words = "a whole number, 'unlimited' or 'plan'" if space else "a whole number or 'unlimited'"
    raise Invalid(f"{name} must be {words}")


def parse_values(
    body: Mapping[str, object],
    allowed: tuple[str, ...],
    *,
    space: bool = False,
    text: bool = False,
) -> dict[str, Change]:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(f"unknown limit {unknown[0]!r}; known: {', '.join(allowed)}")
    return {k: parse_value(k, v, space=space, text=text) for k, v in body.items()}


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise Invalid("a plan name is 1-80 lower-case letters, digits, '_', '.' or '-'")
    return name


def _limits(row: Plan | None, name: str) -> PlanLimits:
    if row is None:
        return BUILT_IN_DEFAULT if name == DEFAULT_PLAN else PlanLimits(name, {})
    return PlanLimits(row.name, {k: getattr(row, col) for k, col in COLUMNS.items()})


def from_row(row: Plan) -> PlanLimits:
    return _limits(row, row.name)


# plans


async def list_plans(s: AsyncSession) -> list[PlanLimits]:
    rows = [from_row(r) for r in await repo.list_plans(s)]
    if not any(p.name == DEFAULT_PLAN for p in rows):
        rows.insert(0, BUILT_IN_DEFAULT)
    return rows


async def create_plan(s: AsyncSession, name: object, values: Mapping[str, Change]) -> PlanLimits:
    checked = check_name(name)
    if await repo.get_plan(s, checked) is not None or checked == DEFAULT_PLAN:
        raise Conflict(f"Plan {checked} already exists")
    row = Plan(name=checked, created_ms=now_ms())
    _apply(row, values)
    s.add(row)
    await s.flush()
    return from_row(row)


async def update_plan(s: AsyncSession, name: str, values: Mapping[str, Change]) -> PlanLimits:
    """Change some limits of a plan. Lowering one never drops what is already there (Hubs
    stay connected, stored packages stay); it refuses what would go over it from now on."""
    row = await repo.get_plan(s, name)
    if row is None and name == DEFAULT_PLAN:  # a database set up without migration 0004
        row = Plan(name=DEFAULT_PLAN, created_ms=now_ms())
        s.add(row)
    if row is None:
        raise NotFound(f"Plan {name} not found")
    _apply(row, values)
    await s.flush()
    return from_row(row)


def _apply(row: Plan, values: Mapping[str, Change]) -> None:
    for key, value in values.items():
        if key not in COLUMNS or isinstance(value, _Inherit):
            raise Invalid(f"{key} is not a plan limit")
        setattr(row, COLUMNS[key], value)


async def plan_of_org(s: AsyncSession, org_id: str) -> PlanLimits:
    name = await repo.org_plan_name(s, org_id) or DEFAULT_PLAN
    return _limits(await repo.get_plan(s, name), name)


async def set_org_plan(s: AsyncSession, org_id: str, plan: object) -> PlanLimits:
    plan = check_name(plan)
    if await repo.get_org(s, org_id) is None:
        raise NotFound(f"Organization {org_id} not found")
    row = await repo.get_plan(s, plan)
    if row is None and plan == DEFAULT_PLAN:
        row = Plan(name=DEFAULT_PLAN, created_ms=now_ms())
        s.add(row)
        await s.flush()
    if row is None:
        raise NotFound(f"Plan {plan} not found")
    await repo.set_org_plan(s, org_id, plan, now_ms())
    return from_row(row)


async def set_space_limits(
    s: AsyncSession, space_id: str, values: Mapping[str, Change]
) -> dict[str, Any]:
    if await repo.get_space(s, space_id) is None:
        raise NotFound(f"Space {space_id} not found")
    for key, value in values.items():
        if key not in SPACE_LIMITS:
            raise Invalid(f"{key} is not a per-Space limit ({', '.join(SPACE_LIMITS)})")
        if isinstance(value, _Inherit):
            await repo.drop_space_override(s, space_id, key)
        else:
            await repo.set_space_override(s, space_id, key, value, now_ms())
    return await space_limits_json(s, space_id)


async def space_limit(s: AsyncSession, space_id: str, org_id: str, name: str) -> Limit:
    plan = await plan_of_org(s, org_id)
    return effective(plan, await repo.space_overrides(s, space_id), name)


async def space_limits_json(s: AsyncSession, space_id: str) -> dict[str, Any]:
    space = await repo.get_space(s, space_id)
    if space is None:
        raise NotFound(f"Space {space_id} not found")
    plan = await plan_of_org(s, space.org_id)
    overrides = await repo.space_overrides(s, space_id)
    return {
        "spaceId": space_id,
        "plan": plan.name,
        **{k: effective(plan, overrides, k).as_json() for k in SPACE_LIMITS},
    }


# enforcement that reads SQL in the caller's transaction


async def check_room_for_space(s: AsyncSession, org_id: str) -> None:
    """Raise 409 if the organization has as many Spaces as its plan allows. The caller
    holds the org row locked (`repo.lock_org`) so two creations cannot both fit."""
    plan = await plan_of_org(s, org_id)
    limit = Limit(SPACES, plan.get(SPACES), plan.name, "plan")
    used = await repo.count_spaces(s, org_id)
    if not limit.allows(used):
        raise limit.refused(f"Organization {org_id} already has {used} Space(s)", 409, used)


async def store_room(s: AsyncSession, space_id: str, seq_id: str) -> tuple[Limit, int]:
    """The Space's store quota and the bytes it holds besides package `seq_id` (which an
    upload under the same id replaces)."""
    limit = await space_limit(s, space_id, org_id_of(space_id), STORE)
    return limit, await repo.store_bytes_used(s, space_id, except_seq=seq_id)


def store_refusal(limit: Limit, space_id: str, used: int, size: int) -> LimitExceeded:
    return limit.refused(
        f"Storing {size} bytes would bring Space {space_id}'s store to {used + size} bytes",
        413,
        used,
    )


async def space_usage(
    s: AsyncSession, space_id: str, org_id: str, hubs_connected: int, hub_ceiling: int
) -> dict[str, Any]:
    """Each limit of the Space with what it uses now, for `GET …/config` and the Panel.
    `hubs_connected` counts every live replica's Hubs, as Hub admission does."""
    plan = await plan_of_org(s, org_id)
    overrides = await repo.space_overrides(s, space_id)
    hubs = effective(plan, overrides, HUBS).under_ceiling(hub_ceiling, "MANAGER_HUB_LIMIT")
    store = effective(plan, overrides, STORE)
    spaces = effective(plan, {}, SPACES)
    keys = Limit("accessKeys", MAX_LIVE_KEYS, plan.name, "fixed")
    return {
        "plan": plan.name,
        HUBS: hubs.as_json(hubs_connected),
        SPACES: spaces.as_json(await repo.count_spaces(s, org_id)),
        STORE: store.as_json(await repo.store_bytes_used(s, space_id)),
        RATE: effective(plan, {}, RATE).as_json(),
        BURST: effective(plan, {}, BURST).as_json(),
        "accessKeys": keys.as_json(await repo.count_live_access_keys(s, space_id)),
    }
