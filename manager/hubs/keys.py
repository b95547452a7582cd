"""Access-key material and the Hub's key proof (hub-protocol.md §2).

A Hub proves its key with scrypt(session id, salt = whole key), so checking a proof needs the
key itself. We never store keys: a key is `prefix + HMAC(server secret, prefix)`, so the
database (prefix + passlib hash) alone yields nothing, while the manager can re-derive the
key for a prefix the Hub sends in clear. Verified proofs are cached because the Hub resends
the same value on every reconnect and scrypt is deliberately slow. Owns no SQL and no I/O.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import string
import time
from collections import OrderedDict
from dataclasses import dataclass

KEY_PREFIX_TAG = "SCP-ak-"
PREFIX_LEN = 16
_ALPHABET = string.ascii_letters + string.digits
_HASH_CHARS = 128
_RANDOM_CHARS = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 16384, 8, 1, 96


def new_prefix() -> str:
    """A fresh, non-secret lookup prefix of exactly 16 characters."""
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LEN - len(KEY_PREFIX_TAG)))
    return KEY_PREFIX_TAG + tail


def derive_key(secret: bytes, prefix: str) -> str:
    mac = hmac.new(secret, prefix.encode(), hashlib.sha256).digest()
    return prefix + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def key_matches(secret: bytes, key: str) -> bool:
    """Whether a presented key value is one this manager derived (constant time)."""
    if len(key) <= PREFIX_LEN:
        return False
    return hmac.compare_digest(derive_key(secret, key[:PREFIX_LEN]).encode(), key.encode())


@dataclass(frozen=True, slots=True)
class Proof:
    """The parts of a `Digest cnonce="..."` value."""

    value: str
    session: str
    digest: str
    key_prefix: str


class ProofFormatError(ValueError):
    """The Authorization header is not a Hub key proof."""


def parse_authorization(header: str) -> Proof:
    """Extract the proof from `Digest cnonce="<S‖H>"` (spec §2.2)."""
    text = header.strip()
    if not text.lower().startswith("digest "):
        raise ProofFormatError("not a Digest authorization")
    rest = text[7:].strip()
    if not rest.startswith('cnonce="') or not rest.endswith('"'):
        raise ProofFormatError("no cnonce in Digest authorization")
    value = rest[8:-1]
    return parse_proof(value)


def parse_proof(value: str) -> Proof:
    if len(value) <= _RANDOM_CHARS + _HASH_CHARS or len(value) > 1024:
        raise ProofFormatError("proof has the wrong length")
    session, digest = value[:-_HASH_CHARS], value[-_HASH_CHARS:]
    return Proof(value=value, session=session, digest=digest, key_prefix=session[_RANDOM_CHARS:])


def compute_digest(session: str, key: str) -> str:
    raw = hashlib.scrypt(
        session.encode(),
        salt=key.encode(),
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=SCRYPT_DKLEN,
        maxmem=64 * 1024 * 1024,
    )
    return base64.b64encode(raw).decode()


def proof_tag(key: str, value: str) -> str:
    """What we store for a verified proof: useless without the key, so neither a database
    dump nor a rotated secret lets an old record admit anyone."""
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def make_proof(key: str, random_bytes: bytes | None = None) -> str:
    """What a Hub sends for `key`: used by our connector and by tests."""
    rnd = random_bytes if random_bytes is not None else secrets.token_bytes(12)
    session = base64.b64encode(rnd).decode() + key[:PREFIX_LEN]
    return session + compute_digest(session, key)


class ProofCache:
    """Remembers verified proof values (value → key prefix), bounded, least recent out."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._max = max_entries
        self.scrypt_runs = 0
        self.hits = 0
        self._pending: dict[tuple[str, str], asyncio.Future[bool]] = {}

    def lookup(self, value: str) -> str | None:
        prefix = self._entries.get(value)
        if prefix is not None:
            self.hits += 1
            self._entries.move_to_end(value)
        return prefix

    def remember(self, value: str, prefix: str) -> None:
        self._entries[value] = prefix
        self._entries.move_to_end(value)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def forget_prefix(self, prefix: str) -> None:
        for value in [v for v, p in self._entries.items() if p == prefix]:
            del self._entries[value]

    async def verify(self, proof: Proof, key: str) -> bool:
        """Check `proof` against the derived `key`, running scrypt off the event loop once."""
        if self.lookup(proof.value) == proof.key_prefix:
            return True
        return await self.compute(proof, key)

    async def compute(self, proof: Proof, key: str) -> bool:
        """The slow check itself; a match is remembered. Identical proofs arriving together
        (Hubs started from one config reconnecting at once) share one scrypt run."""
        pending = self._pending.get((proof.value, key))
        if pending is not None:
            return await asyncio.shield(pending)
        task = asyncio.ensure_future(self._compute(proof, key))
        self._pending[(proof.value, key)] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._pending.pop((proof.value, key), None)
            else:
                task.add_done_callback(lambda _t: self._pending.pop((proof.value, key), None))

    async def _compute(self, proof: Proof, key: str) -> bool:
        self.scrypt_runs += 1
        digest = await asyncio.to_thread(compute_digest, proof.session, key)
        if key.startswith(proof.key_prefix) and hmac.compare_digest(
            digest.encode(), proof.digest.encode()
        ):
            self.remember(proof.value, proof.key_prefix)
            return True
        return False


class FailureLimiter:
    """Refuses a source for a while after repeated failed proofs, so scrypt cannot be farmed."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0) -> None:
        self._max = max_failures
        self._window = window_s
        self._failures: dict[str, list[float]] = {}

    def blocked(self, source: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(source, []) if now - t < self._window]
        if recent:
            self._failures[source] = recent
        else:
            self._failures.pop(source, None)
        return len(recent) >= self._max

    def failed(self, source: str) -> None:
        self._failures.setdefault(source, []).append(time.monotonic())
        if len(self._failures) > 100_000:
            self._failures.pop(next(iter(self._failures)))
