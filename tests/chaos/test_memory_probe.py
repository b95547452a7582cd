"""The memory probe the soak relies on (tests/chaos/memprobe): a manager started with it
answers SIGUSR2 with its figures and, when tracing, a tracemalloc snapshot to compare."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.chaos.conftest import MemoryProbe, describe_probe, live_memory
from tests.manager_process import ManagerProcess


@pytest.mark.parametrize("frames", [0, 1])
async def test_probe_reports_from_inside_the_manager(tmp_path: Path, frames: int) -> None:
    probe = MemoryProbe(tmp_path / "probe", frames=frames)
    manager = ManagerProcess(tmp_path / "data", env={"MANAGER_DATABASE_URL": "", **probe.env()})
    try:
        await asyncio.to_thread(manager.start, 120)  # importing under tracemalloc: ~10 s
        assert manager.proc is not None
        before = await probe.take(manager.proc.pid, "before")
        async with httpx.AsyncClient(base_url=manager.url) as client:
            for _ in range(20):
                assert (await client.get("/healthz")).status_code == 200
        after = await probe.take(manager.proc.pid, "after+trim")
    finally:
        await asyncio.to_thread(manager.stop)

    assert before["pid"] == after["pid"]
    assert before["manager_from"] and before["proc_kib"]["VmRSS"] > 0
    assert "after_trim_proc_kib" in after
    live = live_memory(after)
    assert live["python"] > 1024  # KiB: a manager holds megabytes of Python objects
    describe_probe(after)
    if frames:
        assert before["traced"] is not None
        lines = probe.growth("before", "after+trim")
        assert lines[0].startswith("traced by lineno, before -> after+trim")
    else:
        assert before["traced"] is None
        assert before["pymalloc"]["bytes in allocated blocks"] > 0
        assert "malloc" in live
