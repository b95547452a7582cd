"""Neither the SQLite file nor the PostgreSQL tables hold a key or token in clear."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import text

from manager.services.context import Services
from tests.conftest import World, bearer


async def _dump_database(svc: Services) -> str:
    rows: list[str] = []
    async with svc.engine.connect() as conn:
        for table in (
            "organizations",
            "spaces",
            "api_tokens",
            "access_keys",
            "hubs",
            "audit_events",
        ):
            result = await conn.execute(text(f"SELECT * FROM {table}"))
            rows.extend(repr(tuple(r)) for r in result)
    return "\n".join(rows)


async def test_no_key_or_token_in_clear(api: httpx.AsyncClient, svc: Services, world: World):
    made = []
    for i in range(3):
        resp = await api.post(
            f"/api/v1/space/{world.space_id}/apikey",
            json={"description": f"k{i}"},
            headers=bearer(world.admin),
        )
        made.append(resp.json()["accessKey"])
    await api.delete(
        f"/api/v1/space/{world.space_id}/apikey",
        headers={**bearer(world.admin), "x-revoke": made[0]},
    )
    secrets = [*made, world.admin.token, world.other_user.token]
    # The random part alone must not appear either (only hashes are stored).
    fragments = secrets + [k[16:] for k in made] + [t.split(".")[2] for t in secrets[3:]]

    dump = await _dump_database(svc)
    for value in fragments:
        assert value not in dump

    if svc.engine.dialect.name == "sqlite":
        await svc.engine.dispose()  # flush WAL into the main file
        db_file = Path(svc.engine.url.database or "")
        blob = db_file.read_bytes()
        for extra in db_file.parent.glob(db_file.name + "-*"):
            blob += extra.read_bytes()
        for value in fragments:
            assert value.encode() not in blob
