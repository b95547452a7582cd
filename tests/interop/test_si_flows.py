"""`si` 0.26.1 end to end through the manager to a Hub behind a tunnel: choose the Hub, send
and start a Sequence, list, read output and stdout as produced, kill; send to and read from
a topic. These are the commands of README "Use it with si"."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.interop.packages import write_hello_package
from tests.interop.peer import HubPeer, join_hub
from tests.interop.si import SI, Si
from tests.running import RunningManager


@pytest.fixture
async def hub(manager: RunningManager) -> AsyncIterator[HubPeer]:
    peer = await join_hub(manager, "si-hub", "--tick-ms", "100", healthy=True)
    yield peer
    await peer.stop()


def stream_lines(si: Si, *args: str, seconds: float) -> list[str]:
    """Run a streaming si command for a while and return what it printed."""
    proc = subprocess.Popen(
        [str(SI), *args],
        env=si.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, _ = proc.communicate()
    return [line for line in out.splitlines() if line.strip()]


def run(si: Si, *args: str) -> str:
    return si.run(*args).stdout


async def test_si_sequence_and_instance_flow(manager: RunningManager, hub: HubPeer, tmp_path: Path):
    si = await asyncio.to_thread(Si, tmp_path, manager.url, manager.world.admin.token)
    package = write_hello_package(tmp_path / "hello.tar.gz")

    await asyncio.to_thread(run, si, "hub", "use", "si-hub")
    sent = json.loads(await asyncio.to_thread(run, si, "seq", "send", str(package)))
    seq_id = sent["_id"] if "_id" in sent else sent["id"]
    started = json.loads(await asyncio.to_thread(run, si, "seq", "start", seq_id))
    inst_id = started["_id"] if "_id" in started else started["id"]

    listed = json.loads(await asyncio.to_thread(run, si, "inst", "ls"))
    assert any(i["id"] == inst_id for i in listed)
    space_instances = (
        await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/instances")
    ).json()
    assert any(i["id"] == inst_id and i["location"] == "si-hub" for i in space_instances)

    output = await asyncio.to_thread(stream_lines, si, "inst", "output", inst_id, seconds=2.5)
    assert any('"tick"' in line for line in output), output
    stdout = await asyncio.to_thread(stream_lines, si, "inst", "stdout", inst_id, seconds=2.5)
    assert any("tick" in line for line in stdout), stdout

    killed = json.loads(await asyncio.to_thread(run, si, "inst", "kill", inst_id))
    assert killed["status"] == "killing" or "killing" in json.dumps(killed)


async def test_si_topics(manager: RunningManager, hub: HubPeer, tmp_path: Path):
    si = await asyncio.to_thread(Si, tmp_path, manager.url, manager.world.admin.token)
    await asyncio.to_thread(run, si, "hub", "use", "si-hub")
    data = tmp_path / "names.ndjson"
    data.write_text('{"name":"Alice"}\n{"name":"Bob"}\n')
    await asyncio.to_thread(
        run, si, "topic", "send", "names", str(data), "-t", "application/x-ndjson"
    )
    got = await asyncio.to_thread(stream_lines, si, "topic", "get", "names", seconds=2.5)
    assert '{"name":"Alice"}' in got and '{"name":"Bob"}' in got, got
    topics = (
        await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/topics")
    ).json()
    assert any(t["name"] == "names" for t in topics)
