"""Access keys of a Space: at most five live, shown once, stored as prefix + passlib hash.

Revoking keys must also drop the Hubs that joined with them (hub-protocol.md §5.6
KEY_REVOKED); the service announces revocations to a listener the app wires to the Hub
registry, so this module stays free of tunnel code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from passlib.hash import pbkdf2_sha256
from sqlalchemy.ext.asyncio import AsyncSession

from manager.common import MAX_DESCRIPTION, now_ms
from manager.db import audit, repo
from manager.db.models import AccessKey
from manager.hubs.keys import derive_key, key_matches, new_prefix
from manager.services.errors import Conflict, Invalid, NotFound

MAX_LIVE_KEYS = 5

RevocationListener = Callable[[str, Sequence[AccessKey]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key: str
    created_ms: int
    description: str


def clean_description(text: object) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise Invalid("description must be a string")
    value = text.strip()
    if len(value) > MAX_DESCRIPTION:
        raise Invalid(f"description is longer than {MAX_DESCRIPTION} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise Invalid("description must not contain NUL characters")
    return value


class AccessKeyService:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.on_revoked: RevocationListener | None = None

    def key_for(self, row: AccessKey) -> str:
        return derive_key(self._secret, row.prefix)

    async def create(
        self, s: AsyncSession, space_id: str, description: object, requestor: str = "system"
    ) -> CreatedKey:
        text = clean_description(description)
        # One creation per Space at a time (on PostgreSQL; SQLite has one writer anyway): the
        # limit below and the unique `created` id are read-then-write, and two replicas (or
        # two requests) creating keys at once would otherwise both pass the limit or both
        # take the same id.
        await repo.lock_space(s, space_id)
        live = await repo.live_access_keys(s, space_id)
        if len(live) >= MAX_LIVE_KEYS:
            raise Conflict(
                f"Space {space_id} already has {MAX_LIVE_KEYS} access keys; revoke one first"
            )
        # `created` doubles as the id used to revoke, so keep it unique within the Space.
        created = max(now_ms(), await repo.latest_access_key_created(s, space_id) + 1)
        prefix = new_prefix()
        while await repo.access_key_by_prefix(s, prefix) is not None:
            prefix = new_prefix()
        key = derive_key(self._secret, prefix)
        s.add(
            AccessKey(
                space_id=space_id,
                created_ms=created,
                description=text,
                prefix=prefix,
                key_hash=pbkdf2_sha256.hash(key),
            )
        )
        await audit.record(
            s,
            space_id=space_id,
            op_code=audit.KEY_CREATED,
            object_id=str(created),
            requestor_id=requestor,
        )
        await s.flush()
        return CreatedKey(key=key, created_ms=created, description=text)

    @staticmethod
    async def list_keys(s: AsyncSession, space_id: str) -> list[dict[str, object]]:
        rows = await repo.live_access_keys(s, space_id)
        return [{"created": r.created_ms, "description": r.description} for r in rows]

    async def find(self, s: AsyncSession, space_id: str, ident: str) -> AccessKey | None:
        """A live key of the Space by its `created` id or by the key value itself."""
        ident = ident.strip()
        row: AccessKey | None = None
        if ident.isascii() and ident.isdigit() and len(ident) <= 16:  # not "²": int() fails
            row = await repo.access_key_by_created(s, space_id, int(ident))
        elif key_matches(self._secret, ident):
            row = await repo.access_key_by_prefix(s, ident[:16])
            if row is not None and not pbkdf2_sha256.verify(ident, row.key_hash):
                row = None
        if row is None or row.space_id != space_id or row.revoked_ms is not None:
            return None
        return row

    async def revoke(
        self, s: AsyncSession, space_id: str, ident: str, requestor: str = "system"
    ) -> AccessKey:
        row = await self.find(s, space_id, ident)
        if row is None:
            raise NotFound("Access key not found")
        await self._revoke_rows(s, space_id, [row], requestor)
        return row

    async def revoke_all_rows(
        self, s: AsyncSession, space_id: str, requestor: str = "system"
    ) -> list[AccessKey]:
        rows = list(await repo.live_access_keys(s, space_id))
        await self._revoke_rows(s, space_id, rows, requestor)
        return rows

    async def _revoke_rows(
        self, s: AsyncSession, space_id: str, rows: Sequence[AccessKey], requestor: str
    ) -> None:
        stamp = now_ms()
        for row in rows:
            row.revoked_ms = stamp
            await audit.record(
                s,
                space_id=space_id,
                op_code=audit.KEY_REVOKED,
                object_id=str(row.created_ms),
                requestor_id=requestor,
            )
        await s.flush()

    async def announce_revoked(self, space_id: str, rows: Sequence[AccessKey]) -> None:
        """Call after the revoking transaction committed."""
        if rows and self.on_revoked is not None:
            await self.on_revoked(space_id, rows)
