"""Organizations and Spaces: creation, the first-start default, and who may see which."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from manager.common import new_org_id, now_ms, space_id_for
from manager.db import repo
from manager.db.models import Organization, Space
from manager.principal import Principal
from manager.services import plans
from manager.services.errors import Conflict, Forbidden, Invalid, NotFound
from manager.services.tokens import IssuedToken, TokenService


@dataclass(frozen=True, slots=True)
class Bootstrap:
    org: Organization
    space: Space
    token: IssuedToken


async def create_org(s: AsyncSession, name: str, org_id: str | None = None) -> Organization:
    oid = org_id or new_org_id()
    if not oid.startswith("org-") or len(oid) > 80:
        raise Invalid("organization ids look like org-<uuid>")
    if await repo.get_org(s, oid) is not None:
        raise Conflict(f"Organization {oid} already exists")
    org = Organization(id=oid, name=name.strip()[:200] or oid, created_ms=now_ms())
    s.add(org)
    await s.flush()
    return org


async def create_space(
    s: AsyncSession, org_id: str, name: str = "", suffix: str | None = None
) -> Space:
    """A new Space, if the organization's plan has room for it (else 409 naming both)."""
    if await repo.lock_org(s, org_id) is None:
        raise NotFound(f"Organization {org_id} not found")
    await plans.check_room_for_space(s, org_id)
    existing = await repo.list_spaces(s, org_id)
    tail = suffix or ("manager" if not existing else f"{uuid.uuid4().hex[:12]}manager")
    if "-" in tail or not tail.isalnum():
        raise Invalid("a Space suffix is letters and digits only (no '-')")
    sid = space_id_for(org_id, tail)
    if await repo.get_space(s, sid) is not None:
        raise Conflict(f"Space {sid} already exists")
    space = Space(id=sid, org_id=org_id, name=name.strip()[:200] or sid, created_ms=now_ms())
    s.add(space)
    await s.flush()
    return space


async def bootstrap_if_empty(s: AsyncSession) -> Bootstrap | None:
    """On a fresh database: a default org, its Space and an admin token (shown once)."""
    if await repo.count_spaces(s) > 0 or await repo.list_orgs(s):
        return None
    org = await create_org(s, "default")
    space = await create_space(s, org.id, "default")
    token = await TokenService.create(s, org.id, name="bootstrap admin", admin=True)
    return Bootstrap(org=org, space=space, token=token)


async def visible_spaces(s: AsyncSession, who: Principal) -> Sequence[Space]:
    """The caller's Spaces, own org first so element 0 is their default (si picks it)."""
    if who.hub_space_id is not None:
        space = await repo.get_space(s, who.hub_space_id)
        return [space] if space else []
    if not who.is_admin:
        return await repo.list_spaces(s, who.org_id)
    every = await repo.list_spaces(s)
    return sorted(every, key=lambda sp: (sp.org_id != who.org_id, sp.created_ms, sp.id))


async def space_for(s: AsyncSession, who: Principal, space_id: str) -> Space:
    """The Space if the caller may use it. Unknown and foreign Spaces look the same to
    non-admins (403), so a token cannot probe which Space ids exist."""
    space = await repo.get_space(s, space_id)
    if space is None:
        if who.is_admin:
            raise NotFound(f"Space {space_id} not found")
        raise Forbidden()
    if not who.may_use_space(space.id, space.org_id):
        raise Forbidden()
    return space
