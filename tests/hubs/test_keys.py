"""Key proofs (hub-protocol.md §2): the spec's vectors, the real Hub's proof from the capture,
derivation from the server secret, and the cache that spares scrypt on reconnects."""

from __future__ import annotations

import asyncio

import pytest

from manager.hubs import keys
from tests.capture import capture_streams, split_head

K1 = "SCP-ak-0123456789abcdef0123456789abcdef"
H1 = (
    "LiKUsBv4jWizVpF5ECamLFNvHByp3aN6yL4NNTTbCACt6OeXq6oSLnmpPCbFvUEZOVOq32lOF8YRKYrDmJtXqmSuYMn6"
    "uF4d6Hug1FAoapnU5z17WY56H879RnVFNmKt"
)
V2 = (
    "/+7dzLuqmYh3ZlVEshortkeyGh2LYNwCkYhbuhWRd5kuEbd6JTivXFSHNj2R/Y0eTaQocVGY3c801CndvYrWxmo59Oei"
    "UY+Hrl3Lgzu9EeOu5+m4AHt5bait2iVx8urfvqWhWeaO58XJc+b9ZiO/tCfr"
)


def test_vector_1():
    proof = keys.make_proof(K1, bytes.fromhex("000102030405060708090a0b"))
    assert proof == "AAECAwQFBgcICQoLSCP-ak-012345678" + H1
    assert len(proof) == 160
    parsed = keys.parse_authorization(f'Digest cnonce="{proof}"')
    assert parsed.key_prefix == "SCP-ak-012345678"
    assert parsed.session == "AAECAwQFBgcICQoLSCP-ak-012345678"


def test_vector_2_short_key():
    proof = keys.make_proof("shortkey", bytes.fromhex("ffeeddccbbaa998877665544"))
    assert proof == V2 and len(proof) == 152
    assert keys.parse_proof(proof).key_prefix == "shortkey"


def _captured_proof() -> str:
    head, _ = split_head(capture_streams()["hub->manager"])
    for line in head.decode("latin-1").split("\r\n"):
        if line.lower().startswith("authorization:"):
            return keys.parse_authorization(line.split(":", 1)[1]).value
    raise AssertionError("no Authorization header in the capture")


async def test_real_hub_proof_from_capture_verifies_once():
    proof = keys.parse_proof(_captured_proof())
    cache = keys.ProofCache()
    assert await cache.verify(proof, K1)
    assert await cache.verify(proof, K1)  # the Hub resends it on every reconnect
    assert cache.scrypt_runs == 1
    assert not await keys.ProofCache().verify(proof, K1[:-1] + "0")


@pytest.mark.parametrize(
    "header",
    [
        "Basic abc",
        'Digest nonce="x"',
        'Digest cnonce="short"',
        "Digest cnonce=" + "a" * 200,
        'Digest cnonce="' + "a" * 2000 + '"',
    ],
)
def test_malformed_authorization(header):
    with pytest.raises(keys.ProofFormatError):
        keys.parse_authorization(header)


def test_derived_keys():
    secret = b"s" * 48
    prefix = keys.new_prefix()
    assert len(prefix) == 16 and prefix.startswith("SCP-ak-")
    key = keys.derive_key(secret, prefix)
    assert key.startswith(prefix) and keys.key_matches(secret, key)
    assert not keys.key_matches(b"t" * 48, key)
    assert not keys.key_matches(secret, key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert not keys.key_matches(secret, prefix)


async def test_cache_forgets_a_prefix():
    proof = keys.parse_proof(keys.make_proof(K1))
    cache = keys.ProofCache(max_entries=2)
    assert await cache.verify(proof, K1)
    cache.forget_prefix(proof.key_prefix)
    assert cache.lookup(proof.value) is None


def test_failure_limiter():
    limiter = keys.FailureLimiter(max_failures=3, window_s=60)
    for _ in range(3):
        assert not limiter.blocked("1.2.3.4")
        limiter.failed("1.2.3.4")
    assert limiter.blocked("1.2.3.4")
    assert not limiter.blocked("5.6.7.8")


async def test_identical_proofs_arriving_together_share_one_scrypt_run():
    proof = keys.parse_proof(keys.make_proof(K1))
    cache = keys.ProofCache()
    results = await asyncio.gather(*(cache.compute(proof, K1) for _ in range(5)))
    assert results == [True] * 5
    assert cache.scrypt_runs == 1
    wrong = await asyncio.gather(*(cache.compute(proof, K1[:-1] + "0") for _ in range(3)))
    assert wrong == [False] * 3
    assert cache.scrypt_runs == 2
