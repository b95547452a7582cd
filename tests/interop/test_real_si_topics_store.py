"""`si` 1.0.1 topic and Store commands through the manager with a real STH 1.0.1 Hub, as a user
runs them (production profile): `si topic ls|create|send|get|rm` (Hub topics, through the
Space) and `si store ls|send|rm|prune` (the Space's Sequence Store), plus starting a stored
package on a Hub by the name it was stored under (`si store send --name X`, `si seq start X`).

`si topic send` and `si topic get` of 1.0.1 both default to `application/x-ndjson`.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from tests.conftest import eventually
from tests.interop.packages import write_hello_package
from tests.interop.real_si import space_get, terminal
from tests.interop.sth import HubFleet, Si
from tests.running import RunningManager

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def space_topic(manager: RunningManager, name: str) -> dict[str, Any] | None:
    for topic in await space_get(manager, "topics"):
        if topic["name"] == name:
            return dict(topic)
    return None


async def test_si_topic_create_ls_send_get_rm(
    manager: RunningManager, real_hubs: HubFleet, si: Si, tmp_path: Path
) -> None:
    await real_hubs.start("hub-a")
    await si.run("hub", "use", "hub-a")
    names = tmp_path / "names.ndjson"
    names.write_text('{"name":"Alice"}\n{"name":"Bob"}\n')

    assert await si.json("topic", "ls") == []
    created = await si.json("topic", "create", "names")
    assert created["id"] == "names" and created["contentType"] == "application/x-ndjson"
    assert created["origin"]["type"] == "hub" and created["state"] == "flowing"
    assert await si.json("topic", "ls") == [
        {
            "contentType": "application/x-ndjson",
            "localProvider": "",
            "topic": "names",
            "topicName": "names",
        }
    ]

    # a reader waiting on the topic gets what `topic send` sends
    reader = await terminal(si, tmp_path / "reader")
    reading = asyncio.ensure_future(reader.stream("topic", "get", "names", seconds=5))
    await asyncio.sleep(2)
    sent = await si.run("topic", "send", "names", str(names), timeout=20)
    assert sent.stdout == ""
    assert await reading == ['{"name":"Alice"}', '{"name":"Bob"}']

    async def provided_by_hub() -> dict[str, Any] | None:
        topic = await space_topic(manager, "names")
        hosts = {(a["role"], a.get("hostId")) for a in (topic or {}).get("actors", [])}
        return topic if ("provider", "hub-a") in hosts else None

    topic = await eventually(provided_by_hub, "the Space to list names provided by hub-a")
    assert topic["contentType"] == "application/x-ndjson"

    # send first, read later: the Hub keeps the data for the first reader
    sent = await si.run("topic", "send", "orders", str(names), timeout=20)
    assert await si.stream("topic", "get", "orders", seconds=3) == [
        '{"name":"Alice"}',
        '{"name":"Bob"}',
    ]

    # -t: a text/plain topic
    notes = tmp_path / "notes.txt"
    notes.write_text("plain words\n")
    typed = await si.json("topic", "create", "notes", "-t", "text/plain")
    assert typed["contentType"] == "text/plain"
    await si.run("topic", "send", "notes", str(notes), "-t", "text/plain", timeout=20)
    assert await si.stream("topic", "get", "notes", "-t", "text/plain", seconds=3) == [
        "plain words"
    ]

    listed = {t["topic"]: t["contentType"] for t in await si.json("topic", "ls")}
    assert listed == {
        "names": "application/x-ndjson",
        "orders": "application/x-ndjson",
        "notes": "text/plain",
    }

    assert await si.json("topic", "rm", "names") == {"message": "Topic names removed"}
    assert {t["topic"] for t in await si.json("topic", "ls")} == {"orders", "notes"}
    missing = await si.run("topic", "rm", "names", check=False)
    assert missing.returncode == 1 and "with code 404" in missing.stderr

    async def hub_actors_gone() -> bool:
        topic = await space_topic(manager, "names")
        return topic is None or not any(a.get("hostId") == "hub-a" for a in topic["actors"])

    await eventually(hub_actors_gone, "the Space to drop hub-a from names")


async def test_si_store_send_ls_rm_prune(manager: RunningManager, si: Si, tmp_path: Path) -> None:
    package = write_hello_package(tmp_path / "hello.tar.gz")
    await si.run("space", "use", manager.world.space_id)  # no Hub: si needs the Space named

    assert await si.json("store", "ls") == []
    named = await si.json("store", "send", str(package), "--name", "hello-store")
    assert named["id"] == "hello-store"
    assert (named["name"], named["version"], named["language"]) == ("hello-seq", "1.0.0", "js")
    assert named["packageSize"] == package.stat().st_size
    assert await si.json("store", "ls") == [named]
    assert await space_get(manager, "s3") == [named]

    unnamed = await si.json("store", "send", str(package))
    assert UUID.match(unnamed["id"]), unnamed
    assert {i["id"] for i in await si.json("store", "ls")} == {"hello-store", unnamed["id"]}

    removed = await si.run("store", "rm", "hello-store")
    assert removed.returncode == 0
    assert [i["id"] for i in await si.json("store", "ls")] == [unnamed["id"]]
    missing = await si.run("store", "rm", "hello-store", check=False)
    assert missing.returncode == 1 and "with code 404" in missing.stderr

    pruned = await si.run("store", "prune")
    assert "Sequences removed successfully." in pruned.stderr
    assert await si.json("store", "ls") == []
    assert await space_get(manager, "s3") == []


async def test_si_seq_start_of_a_package_stored_by_name(
    manager: RunningManager, real_hubs: HubFleet, si: Si, tmp_path: Path
) -> None:
    await real_hubs.start("hub-a")
    await si.run("hub", "use", "hub-a")
    package = write_hello_package(tmp_path / "hello.tar.gz")
    assert (await si.json("store", "send", str(package), "--name", "hello-store"))["id"] == (
        "hello-store"
    )

    started = await si.json("seq", "start", "hello-store")
    inst_id = started["_id"]
    info = await si.json("inst", "info", inst_id)
    assert info["status"] == "running"
    assert info["sequence"]["config"]["name"] == "hello-seq"
    output = await si.stream("inst", "output", inst_id, seconds=3)
    assert output[:2] == ['"{\\"tick\\":0}\\n"', '"{\\"tick\\":1}\\n"'], output
    [seq] = await si.json("seq", "ls")
    assert seq["id"] == info["sequence"]["id"] and seq["config"]["name"] == "hello-seq"
    assert inst_id in [i["id"] for i in await space_get(manager, "instances")]
