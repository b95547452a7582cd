"""Test-only memory probe for a manager process; no manager code knows about it.

The chaos tests (tests/chaos/conftest.py, MemoryProbe) put this directory on the manager's
PYTHONPATH with MEMPROBE_DIR set; Python then imports this `sitecustomize` at start-up, before
the manager. Without MEMPROBE_DIR it does nothing. It starts tracemalloc when MEMPROBE_FRAMES
(frames per trace) is above 0 and installs a SIGUSR2 handler; on each SIGUSR2 it reads a label
from MEMPROBE_DIR/request, runs gc.collect() and writes

    <label>.tracemalloc  the snapshot, for Snapshot.load / compare_to (when tracing)
    <label>.json         traced memory, RSS, glibc malloc (mallinfo2), SQLite's heap,
                         pymalloc's arenas and allocated blocks (not under tracemalloc), live
                         objects counted by type, and the modules imported so far

the .json last (written to a temp name, then renamed), so a reader that sees it sees both.
A label ending in `+trim` also calls malloc_trim(0) afterwards and records RSS again: what
RSS glibc was only holding as free memory.

The handler runs on the main thread between two bytecodes of the event loop, so it blocks
the manager while it works (milliseconds without tracemalloc, a second or two with it); the
tests ask only when no Hub is connected. It replaces any sitecustomize the interpreter has.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

_MALLINFO2 = (
    "arena",  # non-mmapped space allocated from the system (main + other arenas)
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",  # mmapped space (big blocks)
    "usmblks",
    "fsmblks",
    "uordblks",  # in use
    "fordblks",  # free, held by malloc
    "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2]


def _libc() -> Any:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _mallinfo(libc: Any) -> dict[str, int]:
    fn = getattr(libc, "mallinfo2", None)
    if fn is None:
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {name: int(getattr(info, name)) for name in _MALLINFO2}


def _sqlite() -> dict[str, int]:
    """SQLite's own heap (page caches, schemas, statements): not seen by tracemalloc."""
    if "_sqlite3" not in sys.modules:
        return {}
    try:
        lib = ctypes.CDLL("libsqlite3.so.0")
    except OSError:
        return {}
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.restype = ctypes.c_int64
    lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
    return {
        "memory_used": int(lib.sqlite3_memory_used()),
        "memory_highwater": int(lib.sqlite3_memory_highwater(0)),
    }


def _proc() -> dict[str, int]:
    out: dict[str, int] = {}
    for path, names in (
        ("/proc/self/status", ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads")),
        ("/proc/self/smaps_rollup", ("Anonymous", "Private_Dirty")),
    ):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            name, _, value = line.partition(":")
            if name in names:
                out[name] = int(value.split()[0])
    return out


def _pymalloc() -> dict[str, int]:
    """pymalloc's arenas (mmapped directly, so neither in mallinfo nor, when free space
    inside them, in traced memory): sys._debugmallocstats() writes to fd 2, borrowed here."""
    out: dict[str, int] = {}
    with tempfile.TemporaryFile("w+") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read()
    for line in text.splitlines():
        name, eq, value = line.partition("=")
        if not eq:
            continue
        name = name.strip().lstrip("# ").strip()
        if name.endswith("unused pools * 16384 bytes"):
            name = "bytes in unused pools"
        if name in (
            "arenas allocated current",
            "bytes in allocated blocks",
            "bytes in available blocks",
            "bytes in unused pools",
        ):
            out[name] = int(value.strip().replace(",", ""))
        if name == "Total" and "arena_total" not in out:
            out["arena_total"] = int(value.strip().replace(",", ""))
    return out


def _types() -> dict[str, int]:
    counts = Counter(type(o).__qualname__ for o in gc.get_objects())
    return dict(counts.most_common(60))


def _dump(directory: Path, libc: Any) -> None:
    try:
        label = (directory / "request").read_text().strip() or "snapshot"
    except OSError:
        label = f"snapshot-{time.monotonic():.0f}"
    trim = label.endswith("+trim")
    started = time.monotonic()
    tracing = tracemalloc.is_tracing()
    before_gc = tracemalloc.get_traced_memory()[0] if tracing else None
    collected = gc.collect()
    if tracing:
        tracemalloc.take_snapshot().dump(str(directory / f"{label}.tracemalloc"))
    current, peak = tracemalloc.get_traced_memory() if tracing else (None, None)
    info: dict[str, Any] = {
        "label": label,
        "pid": os.getpid(),
        "manager_from": getattr(sys.modules.get("manager"), "__file__", None),
        "traced_before_gc": before_gc,
        "gc_collected": collected,
        "traced": current,
        "traced_peak": peak,
        "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory() if tracing else None,
        "gc_objects": len(gc.get_objects()),
        "gc_garbage": len(gc.garbage),
        "types": _types(),
        "modules": sorted(sys.modules),
        "proc_kib": _proc(),
        "mallinfo2": _mallinfo(libc),
        "sqlite": _sqlite(),
        "pymalloc": _pymalloc(),
    }
    if trim and libc is not None:
        libc.malloc_trim(0)
        info["after_trim_proc_kib"] = _proc()
        info["after_trim_mallinfo2"] = _mallinfo(libc)
    info["took_s"] = round(time.monotonic() - started, 3)
    tmp = directory / f".{label}.json"
    tmp.write_text(json.dumps(info, indent=1))
    tmp.rename(directory / f"{label}.json")


def _install() -> None:
    raw = os.environ.get("MEMPROBE_DIR")
    if not raw:
        return
    directory = Path(raw)
    directory.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get("MEMPROBE_FRAMES", "1"))
    if frames > 0 and not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    libc = _libc()

    def on_signal(_signum: int, _frame: object) -> None:
        try:
            _dump(directory, libc)
        except Exception as exc:  # never take the manager down
            (directory / "error.txt").write_text(repr(exc))

    signal.signal(signal.SIGUSR2, on_signal)


_install()
