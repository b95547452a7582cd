"""User API tokens: JWT-shaped because `si` insists on three base64url parts.

The token carries its id in the header part (`kid`) for lookup and 256 random bits in the
signature part; only its SHA-256 is stored, which is enough for a value that cannot be
guessed. Lookups are cached for a couple of seconds because every API call checks one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager.common import now_ms
from manager.db import repo
from manager.db.models import ApiToken
from manager.principal import Principal
from manager.services.errors import NotFound

CACHE_TTL_S = 2.0
REFRESH_AFTER_S = CACHE_TTL_S / 2
STALE_OK_S = 600.0  # how long a cached token outlives a database outage


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(token: str) -> str | None:
    """The `kid` inside a token's header part, or None for anything that is not ours."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 2048:
        return None
    try:
        header = json.loads(_unb64(parts[0]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) and 0 < len(kid) <= 40 else None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: str
    token: str
    org_id: str
    is_admin: bool


class TokenService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}

    @staticmethod
    async def create(
        s: AsyncSession, org_id: str, *, name: str = "", admin: bool = False
    ) -> IssuedToken:
        if await repo.get_org(s, org_id) is None:
            raise NotFound(f"Organization {org_id} not found")
        token_id = "tok_" + secrets.token_hex(8)
        header = _b64(
            json.dumps(
                {"alg": "HS256", "typ": "JWT", "kid": token_id}, separators=(",", ":")
            ).encode()
        )
        payload = _b64(
            json.dumps({"org": org_id, "iat": int(time.time())}, separators=(",", ":")).encode()
        )
        token = f"{header}.{payload}.{_b64(secrets.token_bytes(32))}"
        s.add(
            ApiToken(
                id=token_id,
                org_id=org_id,
                name=name[:200],
                token_hash=token_hash(token),
                is_admin=admin,
                created_ms=now_ms(),
            )
        )
        return IssuedToken(token_id=token_id, token=token, org_id=org_id, is_admin=admin)

    @staticmethod
    async def revoke(s: AsyncSession, token_id: str) -> None:
        row = await repo.get_token(s, token_id)
        if row is None:
            raise NotFound(f"Token {token_id} not found")
        if row.revoked_ms is None:
            row.revoked_ms = now_ms()

    async def authenticate(self, token: str) -> Principal | None:
        """The principal for a bearer token, or None; never raises on garbage."""
        digest = token_hash(token)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            self._refresh_ahead(token, digest, now - hit[0])
            return hit[1]
        try:
            return await asyncio.shield(self._lookup_once(token, digest))
        except (SQLAlchemyError, ConnectionError, TimeoutError):
            # The database is away: a caller we knew a moment ago keeps working (proxied
            # Hub calls need no database), for a bounded time; everyone else waits.
            if hit is not None and now - hit[0] < STALE_OK_S:
                return hit[1]
            raise

    def cached(self, token: str) -> Principal | None:
        """The principal for a token `authenticate` accepted less than CACHE_TTL_S ago, or
        None (never seen, expired, or refused): the fast lane's check, which must not wait."""
        digest = token_hash(token)
        hit = self._cache.get(digest)
        if hit is None:
            return None
        age = time.monotonic() - hit[0]
        if age >= CACHE_TTL_S:
            return None
        self._refresh_ahead(token, digest, age)
        return hit[1]

    def _refresh_ahead(self, token: str, digest: str, age: float) -> None:
        """A token in use is looked up again in the background once half its cache time is
        gone, so it never expires under load. Before, every request in flight when it did
        expire went to SQL at once (64 at c=64, every 2 s): the proxy's p99 tail."""
        if age >= REFRESH_AFTER_S and digest not in self._lookups:
            task = asyncio.ensure_future(self._lookup_once(token, digest))
            task.add_done_callback(_quiet)

    def _lookup_once(self, token: str, digest: str) -> asyncio.Future[Principal | None]:
        """One lookup per token at a time, shared by everyone asking meanwhile."""
        running = self._lookups.get(digest)
        if running is None:
            running = self._lookups[digest] = asyncio.ensure_future(self._lookup(token, digest))
            running.add_done_callback(lambda _done: self._lookups.pop(digest, None))
        return running

    def forget_cache(self) -> None:
        self._cache.clear()

    async def _lookup(self, token: str, digest: str) -> Principal | None:
        started = time.monotonic()  # a revocation after this is seen by the next lookup
        principal = await self._read(token, digest)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (started, principal)
        return principal

    async def _read(self, token: str, digest: str) -> Principal | None:
        token_id = token_id_of(token)
        if token_id is None:
            return None
        async with self._sessions() as s:
            row = await repo.get_token(s, token_id)
        if row is None or row.revoked_ms is not None:
            return None
        if not hmac.compare_digest(row.token_hash.encode(), digest.encode()):
            return None
        return Principal(org_id=row.org_id, token_id=row.id, is_admin=row.is_admin)


def _quiet(task: asyncio.Future[Principal | None]) -> None:
    """A background refresh that failed (the database away) leaves the entry to expire."""
    if not task.cancelled():
        task.exception()
