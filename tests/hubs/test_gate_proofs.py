"""The gate's key-proof checks: remembered across restarts, useless once a key is revoked or
the server secret rotated, and an unknown key prefix costs what a wrong proof costs."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import AsyncIterator

from manager.config import Settings
from manager.hubs import keys
from manager.services.context import Services
from manager.services.server_secret import rotate_secret
from tests.conftest import World


def _target(space_id: str) -> str:
    return f"/api/v1/{space_id.rsplit('-', 1)[0]}/{space_id}/"


def _headers(proof: str) -> dict[str, str]:
    return {"authorization": f'Digest cnonce="{proof}"', "x-sth-id": "hub"}


async def _new_key(svc: Services, space_id: str) -> str:
    async with svc.sessions() as s, s.begin():
        return (await svc.keys.create(s, space_id, "gate test")).key


async def _admitted(svc: Services, space_id: str, proof: str, peer: str = "10.0.0.1") -> bool:
    hello = await svc.gate.check(_target(space_id), _headers(proof), peer)
    if isinstance(hello, int):
        return False
    hello.slot.release()
    return True


@contextlib.asynccontextmanager
async def _restarted(settings: Settings) -> AsyncIterator[Services]:
    """A second manager on the same database and data dir, as after a restart."""
    restarted = Services.build(settings)
    try:
        yield restarted
    finally:
        await restarted.aclose()


async def test_a_restarted_manager_checks_known_proofs_without_scrypt(
    svc: Services, settings: Settings, world: World
):
    key = await _new_key(svc, world.space_id)
    proofs = [keys.make_proof(key) for _ in range(3)]
    for proof in proofs:
        assert await _admitted(svc, world.space_id, proof)
    assert svc.gate.proofs.scrypt_runs == 3
    assert await _admitted(svc, world.space_id, proofs[0])  # a reconnect: from memory
    assert svc.gate.proofs.scrypt_runs == 3

    async with _restarted(settings) as restarted:
        for proof in proofs:
            assert await _admitted(restarted, world.space_id, proof)
        assert restarted.gate.proofs.scrypt_runs == 0
        assert restarted.gate.proof_store_hits == 3
        # A proof the manager never saw still needs the slow check.
        assert await _admitted(restarted, world.space_id, keys.make_proof(key))
        assert restarted.gate.proofs.scrypt_runs == 1


async def test_a_remembered_proof_stops_working_when_its_key_is_revoked(
    svc: Services, settings: Settings, world: World
):
    key = await _new_key(svc, world.space_id)
    proof = keys.make_proof(key)
    assert await _admitted(svc, world.space_id, proof)
    async with svc.sessions() as s, s.begin():
        row = await svc.keys.revoke(s, world.space_id, key)
    await svc.keys.announce_revoked(world.space_id, [row])
    assert not await _admitted(svc, world.space_id, proof)
    async with _restarted(settings) as restarted:
        assert not await _admitted(restarted, world.space_id, proof)


async def test_a_remembered_proof_is_useless_after_the_secret_rotates(
    svc: Services, settings: Settings, world: World
):
    key = await _new_key(svc, world.space_id)
    proof = keys.make_proof(key)
    assert await _admitted(svc, world.space_id, proof)
    rotate_secret(settings.data_dir)
    async with _restarted(settings) as restarted:
        assert not await _admitted(restarted, world.space_id, proof)
        assert restarted.gate.proof_store_hits == 0


async def test_a_proof_for_another_space_is_refused(svc: Services, world: World):
    key = await _new_key(svc, world.space_id)
    proof = keys.make_proof(key)
    assert not await _admitted(svc, world.other_space_id, proof)
    assert await _admitted(svc, world.space_id, proof)
    assert not await _admitted(svc, world.other_space_id, proof)  # even once remembered


async def test_unknown_prefix_and_wrong_proof_cost_the_same(svc: Services, world: World):
    """Both run one scrypt; before, an unknown prefix was answered ~35x faster."""
    key = await _new_key(svc, world.space_id)
    unknown_key = keys.derive_key(b"not our secret", keys.new_prefix())

    def wrong_proof() -> str:
        real = keys.make_proof(key)
        return real[:-10] + ("A" * 10 if not real.endswith("A" * 10) else "B" * 10)

    async def timed(proof: str, peer: str) -> float:
        runs = svc.gate.proofs.scrypt_runs
        started = time.perf_counter()
        assert not await _admitted(svc, world.space_id, proof, peer)
        elapsed = time.perf_counter() - started
        assert svc.gate.proofs.scrypt_runs == runs + 1
        return elapsed

    wrong, unknown = [], []
    for i in range(6):  # alternate, so load on the machine hits both alike
        wrong.append(await timed(wrong_proof(), f"10.1.0.{i}"))
        unknown.append(await timed(keys.make_proof(unknown_key), f"10.2.0.{i}"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (wrong, unknown)
