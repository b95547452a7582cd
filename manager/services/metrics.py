"""Operator-facing counters in the Prometheus text format.

What an operator of thousands of tunnels asks first: how many Hubs are live, how much the
key proofs cost (scrypt runs vs cache hits), what got refused and why (tunnels by reason,
anything over a plan's limit by limit), and whether the process leaks (tasks, open files,
memory). Read from live objects; nothing is stored.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from manager.services import plans
from manager.services.context import Services


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    kind: str  # "gauge" or "counter"
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def collect(svc: Services) -> list[Sample]:
    gate = svc.gate
    hubs = list(svc.registry)
    samples = [
        Sample("manager_hubs_connected", "gauge", "Hubs with a live tunnel", len(hubs)),
        Sample(
            "manager_tunnels_open",
            "gauge",
            "Admitted tunnels, including ones still settling their Hub id",
            sum(gate.tunnels_by_source.values()),
        ),
        Sample(
            "manager_proxied_requests_in_flight",
            "gauge",
            "Requests now proxied to Hubs",
            sum(h.in_flight for h in hubs),
        ),
        Sample(
            "manager_scrypt_runs_total",
            "counter",
            "Key proofs checked the slow way",
            gate.proofs.scrypt_runs,
        ),
        Sample(
            "manager_proof_cache_hits_total",
            "counter",
            "Key proofs accepted from memory",
            gate.proofs.hits,
        ),
        Sample(
            "manager_proof_store_hits_total",
            "counter",
            "Key proofs accepted from the database (verified before a restart)",
            gate.proof_store_hits,
        ),
    ]
    samples += [
        Sample(
            "manager_tunnels_refused_total",
            "counter",
            "Tunnels refused, by reason",
            count,
            (("reason", reason),),
        )
        for reason, count in sorted(gate.refused.items())
    ]
    samples += [
        Sample(
            "manager_limit_refusals_total",
            "counter",
            "Refused for being over a plan's limit (or a global ceiling), by limit",
            svc.quotas.refusals.get(limit, 0),
            (("limit", limit),),
        )
        for limit in plans.COLUMNS
        if limit != plans.BURST  # a request over its burst is counted as requestsPerSecond
    ]
    samples += [
        Sample("manager_asyncio_tasks", "gauge", "Tasks on the event loop", _tasks()),
        Sample("manager_threads", "gauge", "Threads in the process", threading.active_count()),
        Sample("manager_open_fds", "gauge", "Open file descriptors", _open_fds()),
        Sample("manager_resident_memory_bytes", "gauge", "Resident set size", _rss_bytes()),
    ]
    return samples


def render(samples: list[Sample]) -> str:
    lines: list[str] = []
    described: set[str] = set()
    for s in samples:
        if s.name not in described:
            described.add(s.name)
            lines += [f"# HELP {s.name} {s.help}", f"# TYPE {s.name} {s.kind}"]
        labels = ",".join(f'{k}="{v}"' for k, v in s.labels)
        value = int(s.value) if float(s.value).is_integer() else s.value
        lines.append(f"{s.name}{{{labels}}} {value}" if labels else f"{s.name} {value}")
    return "\n".join(lines) + "\n"


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return -1
    return pages * os.sysconf("SC_PAGE_SIZE")
