"""`si` 0.26.1 against REAL Hub code: the released `@scramjet/host` 0.18.7 joined through
`space-manager connect`. The same flows as tests/interop/test_si_flows.py, where that
release can run them (its topics list is a stub, so topic flows are checked on the Hub's own
topic endpoints only)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.conftest import eventually
from tests.connector.helpers import Host018, connector_running, is_healthy, options_for, pack_hello
from tests.interop.si import Si
from tests.interop.test_si_flows import stream_lines
from tests.running import RunningManager


def run(si: Si, *args: str) -> str:
    return si.run(*args).stdout


def ident(printed: str) -> str:
    value = json.loads(printed)
    return str(value.get("_id") or value.get("id"))


async def test_si_against_the_real_0_18_hub(
    manager: RunningManager, host018: Host018, tmp_path: Path
):
    key = await manager.new_key()
    async with connector_running(options_for(manager, key, host018.url, hub_id="real-hub")):
        await eventually(lambda: is_healthy(manager, "real-hub"), what="real-hub healthy")
        si = await asyncio.to_thread(Si, tmp_path, manager.url, manager.world.admin.token)
        package = pack_hello(tmp_path / "hello.tar.gz")

        await asyncio.to_thread(run, si, "hub", "use", "real-hub")
        seq_id = ident(await asyncio.to_thread(run, si, "seq", "send", str(package)))
        inst_id = ident(await asyncio.to_thread(run, si, "seq", "start", seq_id))
        listed = json.loads(await asyncio.to_thread(run, si, "inst", "ls"))
        assert any(i["id"] == inst_id for i in listed)

        output = await asyncio.to_thread(stream_lines, si, "inst", "output", inst_id, seconds=3)
        assert output, "no output from the real Hub's instance"
        await asyncio.to_thread(run, si, "inst", "kill", inst_id)

        async def gone() -> bool:
            resp = await manager.client.get(
                f"/api/v1/space/{manager.world.space_id}/api/v1/sth/real-hub/api/v1/instances"
            )
            return all(i["id"] != inst_id for i in resp.json())

        await eventually(gone, what="instance gone after si inst kill")

        data = tmp_path / "names.ndjson"
        data.write_text('{"name":"Alice"}\n')
        await asyncio.to_thread(
            run, si, "topic", "send", "names", str(data), "-t", "application/x-ndjson"
        )
        got = await asyncio.to_thread(stream_lines, si, "topic", "get", "names", seconds=2.5)
        assert got == ['{"name":"Alice"}'], got
