"""The Panel's sign-in session: an HMAC-signed, expiring cookie, and the CSRF tokens tied to it.

The cookie carries the API token's id (never the token), an expiry and a random nonce,
signed with a key derived from the server secret, so the Panel needs no table of its own.
Every request re-reads the token's row (cached for a couple of seconds, like bearer tokens),
so revoking the token ends every Panel session it opened. CSRF tokens are an HMAC of the
session's nonce: forms carry them in a hidden field, the Panel's JavaScript in a header.
Before sign-in a short "pre-session" nonce cookie plays the same role for the sign-in form.

Must not know about routes or templates; `manager.web.auth` uses it for API calls the
Panel's JavaScript makes with the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager.db import repo
from manager.principal import Principal

SESSION_COOKIE = "sm_panel"
PRESESSION_COOKIE = "sm_panel_pre"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SESSION_TTL_S = 12 * 3600
PRESESSION_TTL_S = 3600
CACHE_TTL_S = 2.0
STALE_OK_S = 600.0  # as for bearer tokens: a known session outlives a short database outage
_VERSION = "v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    token_id: str
    expires: int
    nonce: str


class PanelSessions:
    """Issues and checks Panel cookies; one per app, keyed by the server secret."""

    def __init__(self, secret: bytes, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._key = hmac.new(secret, b"space-manager panel session v1", hashlib.sha256).digest()
        self._sessions = sessions
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    # the session cookie

    def issue(self, token_id: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + SESSION_TTL_S)
        body = f"{_VERSION}.{token_id}.{expires}.{secrets.token_urlsafe(18)}"
        return f"{body}.{self._mac(body)}"

    def parse(self, value: str | None, now: float | None = None) -> Session | None:
        """The session a cookie value names, if its signature holds and it has not expired."""
        if not value or len(value) > 400:
            return None
        parts = value.split(".")
        if len(parts) != 5 or parts[0] != _VERSION:
            return None
        body, mac = ".".join(parts[:4]), parts[4]
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        _, token_id, expires, nonce = parts[:4]
        if not expires.isdigit() or int(expires) < (now if now is not None else time.time()):
            return None
        return Session(token_id=token_id, expires=int(expires), nonce=nonce)

    async def principal(self, value: str | None) -> Principal | None:
        """Who a cookie signs in, checked against the token's row: revoked means signed out.

        Raises the database's errors when it is away and the session is not cached."""
        session = self.parse(value)
        if session is None:
            return None
        now = time.monotonic()
        hit = self._cache.get(session.token_id)
        if hit is not None and now - hit[0] < CACHE_TTL_S:
            return hit[1]
        try:
            async with self._sessions() as s:
                row = await repo.get_token(s, session.token_id)
        except (SQLAlchemyError, ConnectionError, TimeoutError):
            if hit is not None and now - hit[0] < STALE_OK_S:
                return hit[1]
            raise
        who = None
        if row is not None and row.revoked_ms is None:
            who = Principal(org_id=row.org_id, token_id=row.id, is_admin=row.is_admin)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[session.token_id] = (now, who)
        return who

    # CSRF

    def new_presession(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._mac('pre.' + nonce)}"

    def presession_nonce(self, value: str | None) -> str | None:
        if not value or len(value) > 200 or "." not in value:
            return None
        nonce, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac.encode(), self._mac("pre." + nonce).encode()):
            return None
        return nonce

    def csrf_for(self, nonce: str) -> str:
        return self._mac("csrf." + nonce)

    def csrf_ok(self, nonce: str | None, offered: str | None) -> bool:
        if not nonce or not offered:
            return False
        return hmac.compare_digest(offered.encode(), self.csrf_for(nonce).encode())

    def nonce_from(self, cookies: Mapping[str, str]) -> str | None:
        """The nonce CSRF tokens are tied to: the session's, or before sign-in the
        pre-session cookie's."""
        session = self.parse(cookies.get(SESSION_COOKIE))
        if session is not None:
            return session.nonce
        return self.presession_nonce(cookies.get(PRESESSION_COOKIE))
