"""`si` 1.0.1 Sequence and Instance commands through the manager on a real STH 1.0.1 Hub, as a
user runs them (production profile): `si seq send|deploy|ls|info|start|update|rm|prune` and
`si inst ls|info|health|output|stdout|stderr|log|input|stdin|event|stop|kill|restart`.

The Sequence (`real_si.ECHO_JS`) keeps every stream busy, so each command's effect is visible
in what `si` prints; what the Hub then reports through the Space (`/sequences`, `/instances`)
is checked too.

STH 1.0.1 keeps an ended Instance attached to its Sequence for 15 s (`runnerExitDelay` in its
CSIController), so `inst restart`, `inst kill --removeImmediately` (until 404) and `seq rm -f`
of a Sequence with a running Instance take about 16 s each on a real Hub, through the manager
or not. They run in the background, each in a terminal of its own, while the other commands
go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import eventually
from tests.interop.real_si import (
    json_lines,
    space_get,
    terminal,
    write_echo_dir,
    write_echo_package,
)
from tests.interop.sth import HubFleet, Si
from tests.running import RunningManager


def hub_path(manager: RunningManager, hub_id: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/sth/{hub_id}/api/v1"


async def instance_ended(si: Si, inst_id: str, reason: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any] | None:
        info: dict[str, Any] = await si.json("inst", "info", inst_id)
        return info if info.get("terminated", {}).get("reason") == reason else None

    return await eventually(ended, f"instance {inst_id}: {reason}")


async def test_si_seq_send_start_and_every_inst_command(
    manager: RunningManager, real_hubs: HubFleet, si: Si, tmp_path: Path
) -> None:
    await real_hubs.start("hub-a")
    await si.run("hub", "use", "hub-a")
    package = write_echo_package(tmp_path / "echo.tar.gz")

    # seq send / ls / ls -n / info
    sent = await si.json("seq", "send", str(package))
    seq_id = sent["_id"]
    assert sent["sequenceURL"] == f"sequence/{seq_id}"
    [listed] = await si.json("seq", "ls")
    assert listed["id"] == seq_id and listed["location"] == "hub-a"
    assert listed["config"]["name"] == "echo-seq"
    assert await si.json("seq", "ls", "-n", "echo-seq") == [seq_id]
    info = await si.json("seq", "info", seq_id)
    assert info["config"]["version"] == "1.0.0" and info["instances"] == []

    # seq start with a chosen Instance id, a config and arguments
    inst_id = str(uuid.uuid4())
    started = await si.json(
        "seq", "start", seq_id, "--inst-id", inst_id, "-s", '{"greeting":"hi"}',
        "--args", '["a1", 2]',
    )  # fmt: skip
    assert started["_id"] == inst_id
    [inst] = [i for i in await si.json("inst", "ls") if i["id"] == inst_id]
    assert inst["sequence"]["id"] == seq_id
    inst = await si.json("inst", "info", inst_id)
    assert inst["status"] == "running" and inst["args"] == ["a1", 2]
    assert (await si.json("inst", "health", inst_id))["healthy"] is True
    assert seq_id in [s["id"] for s in await space_get(manager, "sequences")]
    space_instances = {i["id"]: i for i in await space_get(manager, "instances")}
    assert space_instances[inst_id]["sequence"]["id"] == seq_id

    # the four output streams, read side by side (each in a terminal of its own)
    t1, t2, t3, t4, t5, t6 = [await terminal(si, tmp_path / f"t{n}") for n in range(1, 7)]
    output, stdout, stderr, log = await asyncio.gather(
        si.stream("inst", "output", inst_id, seconds=4),
        t1.stream("inst", "stdout", inst_id, seconds=4),
        t2.stream("inst", "stderr", inst_id, seconds=4),
        t3.stream("inst", "log", inst_id, seconds=4),
    )
    assert output[:3] == ["tick 0", "tick 1", "tick 2"], output
    assert stdout[:3] == ['config {"greeting":"hi"}', 'args ["a1",2]', "stdout 0"], stdout
    assert stderr[:2] == ["stderr 0", "stderr 1"], stderr
    logged = [e["msg"] for e in json_lines(log) if e.get("from") == "Sequence"]
    assert logged[:2] == ["log 0", "log 1"], log

    # In the background: restart, kill --removeImmediately, rm -f of a Sequence in use
    restart_id = (await si.json("seq", "start", seq_id))["_id"]
    remove_id = (await si.json("seq", "start", seq_id))["_id"]
    other_seq = (await si.json("seq", "send", str(package)))["_id"]
    other_inst = (await si.json("seq", "start", other_seq))["_id"]
    before = await si.json("inst", "info", restart_id)

    async def remove_immediately() -> dict[str, Any]:
        killed: dict[str, Any] = await t5.json("inst", "kill", remove_id, "--removeImmediately")

        async def gone() -> bool:
            resp = await manager.client.get(f"{hub_path(manager, 'hub-a')}/instance/{remove_id}")
            return resp.status_code == 404

        await eventually(gone, f"instance {remove_id} removed", timeout=40)
        return killed

    background = asyncio.gather(
        t4.json("inst", "restart", restart_id),
        remove_immediately(),
        t6.json("seq", "rm", other_seq, "-f"),
    )

    async def foreground() -> None:
        # input (text/plain by default, kept open without -e) and stdin reach the Sequence
        (tmp_path / "input.txt").write_text("hello input\n")
        (tmp_path / "stdin.txt").write_text("hello stdin\n")
        assert (await si.run("inst", "input", inst_id, str(tmp_path / "input.txt"))).stdout == ""
        await si.run("inst", "stdin", inst_id, str(tmp_path / "stdin.txt"))
        output, stdout = await asyncio.gather(
            si.stream("inst", "output", inst_id, seconds=3),
            t1.stream("inst", "stdout", inst_id, seconds=3),
        )
        assert "input:hello input" in output, output
        assert "stdin:hello stdin" in stdout, stdout

        # events: emit; on (the last one); on -n (the next one); on -s (a stream of them)
        assert await si.json("inst", "event", "emit", inst_id, "ping", "one") == {"accepted": "OK"}
        assert await si.json("inst", "event", "on", inst_id, "pong") == "pong:one"
        next_event = asyncio.ensure_future(t1.json("inst", "event", "on", inst_id, "pong", "-n"))
        event_stream = asyncio.ensure_future(
            t2.stream("inst", "event", "on", inst_id, "pong", "-s", seconds=4)
        )
        for _ in range(20):  # until the waiting `on -n` got one (it must be listening first)
            await asyncio.sleep(0.5)
            if next_event.done():
                break
            await si.run("inst", "event", "emit", inst_id, "ping", "two")
        assert await next_event == "pong:two"
        assert '"pong:two"' in await event_stream

        # stop: graceful, the Instance ends
        stopping = await si.json("inst", "stop", inst_id, "500")
        assert stopping["id"] == inst_id and stopping["status"] == "stopping"
        stopped = await instance_ended(si, inst_id, "Instance stopped")
        assert stopped["status"] == "completed"

        # kill
        kill_id = (await si.json("seq", "start", seq_id))["_id"]
        killed = await si.json("inst", "kill", kill_id)
        assert killed["id"] == kill_id and killed["status"] == "killing"
        assert (await instance_ended(si, kill_id, "Instance killed"))["terminated"][
            "exitcode"
        ] == 137

    try:
        await foreground()
    except BaseException:
        # Not cancelled: a cancelled `si` keeps running (and `si inst restart` polls forever
        # once the Hub is gone); each ends by itself or at Si.run's timeout.
        with contextlib.suppress(BaseException):
            await background
        raise

    # what the background commands did
    restarted, removed, seq_removed = await background
    assert restarted["killResponse"]["status"] == "killing"
    assert restarted["seqStartResponse"]["_id"] == restart_id
    after = await si.json("inst", "info", restart_id)
    assert after["status"] == "running" and after["started"] > before["started"]
    assert (await si.stream("inst", "output", restart_id, seconds=2))[:1] == ["tick 0"]

    assert removed["status"] == "killing"
    gone = await si.run("inst", "info", remove_id, check=False)
    assert gone.returncode == 1 and "with code 404" in gone.stderr

    assert seq_removed == {"id": other_seq}
    assert other_seq not in [s["id"] for s in await si.json("seq", "ls")]
    assert other_inst not in [i["id"] for i in await si.json("inst", "ls")]

    async def space_forgot() -> bool:
        seqs = [s["id"] for s in await space_get(manager, "sequences")]
        insts = [i["id"] for i in await space_get(manager, "instances")]
        return other_seq not in seqs and other_inst not in insts and remove_id not in insts

    await eventually(space_forgot, "the Space to drop the removed Sequence and Instances")


async def test_si_seq_deploy_update_rm_prune(
    manager: RunningManager, real_hubs: HubFleet, si: Si, tmp_path: Path
) -> None:
    await real_hubs.start("hub-a")
    await si.run("hub", "use", "hub-a")
    package = write_echo_package(tmp_path / "echo.tar.gz")

    # deploy a folder: packed, sent and started; si prints the Instance
    deployed = await si.run("seq", "deploy", str(write_echo_dir(tmp_path / "echo")))
    [folder_inst] = [json.loads(line)["_id"] for line in deployed.stdout.splitlines()]
    folder_seq = (await si.json("inst", "info", folder_inst))["sequence"]["id"]

    # deploy a package with arguments: si prints the Sequence, then the Instance
    deployed = await si.run("seq", "deploy", str(package), "--args", '["x"]')
    seq_line, inst_line = deployed.stdout.splitlines()
    pkg_seq, pkg_inst = json.loads(seq_line)["_id"], json.loads(inst_line)["_id"]
    info = await si.json("inst", "info", pkg_inst)
    assert info["sequence"]["id"] == pkg_seq and info["args"] == ["x"]
    running = {i["id"]: i["status"] for i in await si.json("inst", "ls")}
    assert running == {folder_inst: "running", pkg_inst: "running"}
    assert {s["id"] for s in await si.json("seq", "ls")} == {folder_seq, pkg_seq}

    # rm and prune are refused while Instances run (si 1.0.1 prints the Hub's refusal of
    # `seq rm` but exits 0)
    busy = await si.run("seq", "rm", folder_seq)
    assert "Can't remove- Sequence in use" in busy.stderr
    refused = await si.run("seq", "prune", check=False)
    assert refused.returncode == 1 and "Some Sequences may have not been deleted." in refused.stderr
    assert {s["id"] for s in await si.json("seq", "ls")} == {folder_seq, pkg_seq}
    for inst_id in (folder_inst, pkg_inst):
        assert (await si.json("inst", "kill", inst_id))["status"] == "killing"

    # update: the same id, the new package
    seq_id = (await si.json("seq", "send", str(package)))["_id"]
    v2 = write_echo_package(tmp_path / "v2.tar.gz", "2.0.0")
    assert (await si.json("seq", "update", seq_id, str(v2)))["_id"] == seq_id
    assert (await si.json("seq", "info", seq_id))["config"]["version"] == "2.0.0"

    async def space_has_v2() -> bool:
        seqs = {s["id"]: s for s in await space_get(manager, "sequences")}
        return seq_id in seqs and seqs[seq_id]["config"]["version"] == "2.0.0"

    await eventually(space_has_v2, "the Space to show the updated Sequence")

    # rm
    assert await si.json("seq", "rm", seq_id) == {"id": seq_id}
    assert {s["id"] for s in await si.json("seq", "ls")} == {folder_seq, pkg_seq}
    unknown = await si.run("seq", "rm", seq_id)
    assert f"The sequence {seq_id} does not exist." in unknown.stderr

    # prune -f: every Sequence goes (their Instances were killed above)
    pruned = await si.run("seq", "prune", "-f", timeout=90)
    assert "Sequences removed successfully." in pruned.stderr
    assert await si.json("seq", "ls") == []

    async def space_empty() -> bool:
        return bool(await space_get(manager, "sequences") == [])

    await eventually(space_empty, "the Space to show no Sequences")
