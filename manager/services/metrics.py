"""Operator-facing metrics in the Prometheus format, with `prometheus_client`.

What an operator of thousands of tunnels asks first: how many Hubs are live and healthy
(per Space), what the proxy does (rate, latency, status, bytes), how much the key proofs
cost (scrypt runs vs cache hits), what got refused and why, whether the database fails,
whether this replica is draining, and whether the process leaks (tasks, fds, memory).

Each `Services` has its own `CollectorRegistry` (tests build many apps in one process; the
global registry would mix them). Two kinds of metric live in it:

- read at scrape (`LiveCollector`): gauges of live objects and the counters the lower
  layers keep as plain integers (the gate, the proof cache, quotas); nothing is stored and
  the hubs layer needs no metrics library;
- updated as things happen: the proxy's histogram and counters (`ProxyMetrics.observe`,
  one call per request with children resolved once, so the hot path allocates nothing)
  and database errors (an SQLAlchemy engine event).

`DOCUMENTED` lists every family name; the README's table and tests/web/test_metrics.py
agree with it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from manager.hubs import state as codes
from manager.services import plans

if TYPE_CHECKING:
    from manager.services.context import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Every family the endpoint exposes (as named on its `# TYPE` line), besides the
# process collector's `process_*` (CPU seconds, RSS, open and max fds, start time).
DOCUMENTED = (
    "manager_hubs_connected",
    "manager_hubs_healthy",
    "manager_space_hubs_connected",
    "manager_space_hubs_healthy",
    "manager_tunnels_open",
    "manager_channels_open",
    "manager_tunnel_admissions_total",
    "manager_tunnels_refused_total",
    "manager_admissions_waiting",
    "manager_admissions_running",
    "manager_admission_wait_seconds",
    "manager_control_messages_received_total",
    "manager_proxied_requests_in_flight",
    "manager_proxied_requests_total",
    "manager_proxied_request_duration_seconds",
    "manager_proxied_bytes_total",
    "manager_fast_lane_requests_total",
    "manager_scrypt_runs_total",
    "manager_proof_cache_hits_total",
    "manager_proof_store_hits_total",
    "manager_limit_refusals_total",
    "manager_database_errors_total",
    "manager_draining",
    "manager_asyncio_tasks",
    "manager_threads",
    "manager_open_fds",
    "manager_resident_memory_bytes",
)

_CONTROL_NAMES = {
    codes.STH_ID: "STH_ID",
    codes.LOAD: "LOAD",
    codes.NETWORK_INFO: "NETWORK_INFO",
    codes.INSTANCES: "INSTANCES",
    codes.SEQUENCES: "SEQUENCES",
    codes.INSTANCE: "INSTANCE",
    codes.SEQUENCE: "SEQUENCE",
    codes.TOPIC: "TOPIC",
}
# An admission's turn comes at once, or after the ones queued before it (MANAGER_ADMISSION_WAIT_S
# at most, 10 s by default).
_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Proxied requests take milliseconds; streams (logs, outputs) take minutes.
_DURATION_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ProxyMetrics:
    """The proxy's counters: one `observe` per proxied request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "manager_proxied_request_duration_seconds",
            "Proxied Hub requests, from the route to the response's end",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "manager_proxied_requests_total",
            "Proxied Hub requests by status code (none: the client left before an answer)",
            ["code"],
            registry=registry,
        )
        self.bytes = Counter(
            "manager_proxied_bytes_total",
            "Body bytes of proxied requests, by direction (to_hub, from_hub)",
            ["direction"],
            registry=registry,
        )
        self._to_hub = self.bytes.labels("to_hub")
        self._from_hub = self.bytes.labels("from_hub")
        self._by_code: dict[int, Any] = {}
        self.fast_lane = Counter(
            "manager_fast_lane_requests_total",
            "Proxied GETs taken by the fast lane (manager/web/fast_lane.py); the others went "
            "through the whole HTTP stack",
            registry=registry,
        )

    def observe(self, status: int, seconds: float, sent: int, received: int) -> None:
        child = self._by_code.get(status)
        if child is None:
            child = self._by_code[status] = self.requests.labels(_code_label(status))
        child.inc()
        self.duration.observe(seconds)
        if sent:
            self._to_hub.inc(sent)
        if received:
            self._from_hub.inc(received)


def _code_label(status: int) -> str:
    if status == 0:
        return "none"
    return str(status) if 100 <= status <= 599 else "other"


class Metrics:
    """The registry of one app and what feeds it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.proxy = ProxyMetrics(self.registry)
        self.database_errors = Counter(
            "manager_database_errors_total",
            "Errors raised by the database driver (unreachable, timeouts, bad statements)",
            registry=self.registry,
        )
        self.admission_wait = Histogram(
            "manager_admission_wait_seconds",
            "How long tunnel admissions waited for a slot (MANAGER_MAX_ADMISSIONS)",
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def watch_database(self, engine: AsyncEngine) -> None:
        def count(_context: object) -> None:
            self.database_errors.inc()

        event.listen(engine.sync_engine, "handle_error", count)

    def read_live(self, svc: Services) -> None:
        self.registry.register(LiveCollector(svc))
        svc.gate.admissions.on_waited = self.admission_wait.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)


class LiveCollector(Collector):
    """Gauges and counters read from the live objects at each scrape."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def describe(self) -> list[Metric]:
        return []  # families are known only at collect time; skips a collect at register

    def collect(self) -> Iterator[Metric]:
        yield from self._hubs()
        yield from self._admissions()
        yield from self._proofs()
        yield from self._process()

    def _hubs(self) -> Iterator[Metric]:
        svc = self.svc
        hubs = list(svc.registry)
        per_space: dict[str, list[int]] = {}
        healthy_total = channels = in_flight = 0
        for hub in hubs:
            counts = per_space.setdefault(hub.space_id, [0, 0])
            counts[0] += 1
            if svc.registry.healthy(hub):
                counts[1] += 1
                healthy_total += 1
            channels += len(getattr(hub.client.session, "channels", ()))  # a tunnel's
            in_flight += hub.in_flight
        yield _gauge("manager_hubs_connected", "Hubs with a live tunnel", len(hubs))
        yield _gauge("manager_hubs_healthy", "Connected Hubs that sent LOAD lately", healthy_total)
        connected = GaugeMetricFamily(
            "manager_space_hubs_connected", "Connected Hubs per Space", labels=["space"]
        )
        healthy = GaugeMetricFamily(
            "manager_space_hubs_healthy", "Healthy Hubs per Space", labels=["space"]
        )
        for space_id, (n, ok) in sorted(per_space.items()):
            connected.add_metric([space_id], n)
            healthy.add_metric([space_id], ok)
        yield connected
        yield healthy
        yield _gauge(
            "manager_tunnels_open",
            "Admitted tunnels, including ones still settling their Hub id",
            sum(svc.gate.tunnels_by_source.values()),
        )
        yield _gauge("manager_channels_open", "BPMux channels open on all tunnels", channels)
        yield _gauge(
            "manager_proxied_requests_in_flight", "Requests now proxied to Hubs", in_flight
        )
        yield _gauge(
            "manager_draining", "1 while this replica drains (after SIGTERM)", svc.drain.draining
        )

    def _admissions(self) -> Iterator[Metric]:
        gate = self.svc.gate
        admissions = CounterMetricFamily(
            "manager_tunnel_admissions",
            "Tunnel admissions by outcome: admitted, or the refusal's reason",
            labels=["outcome"],
        )
        admissions.add_metric(["admitted"], gate.admitted)
        refused = CounterMetricFamily(
            "manager_tunnels_refused", "Tunnels refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(gate.refused.items()):
            admissions.add_metric([reason], count)
            refused.add_metric([reason], count)
        yield admissions
        yield refused
        yield _gauge(
            "manager_admissions_waiting",
            "Tunnels waiting for an admission slot (their key check or their registration)",
            gate.admissions.waiting,
        )
        yield _gauge(
            "manager_admissions_running",
            "Tunnel admissions checking a key or registering a Hub now",
            gate.admissions.running,
        )
        control = CounterMetricFamily(
            "manager_control_messages_received",
            "Control messages from Hubs, by type",
            labels=["type"],
        )
        by_type: dict[str, int] = {}
        for code, count in gate.control_messages.items():
            name = _CONTROL_NAMES.get(code, "other")
            by_type[name] = by_type.get(name, 0) + count
        for name, count in sorted(by_type.items()):
            control.add_metric([name], count)
        yield control

    def _proofs(self) -> Iterator[Metric]:
        gate = self.svc.gate
        yield CounterMetricFamily(
            "manager_scrypt_runs", "Key proofs checked the slow way", gate.proofs.scrypt_runs
        )
        yield CounterMetricFamily(
            "manager_proof_cache_hits", "Key proofs accepted from memory", gate.proofs.hits
        )
        yield CounterMetricFamily(
            "manager_proof_store_hits",
            "Key proofs accepted from the database (verified before a restart)",
            gate.proof_store_hits,
        )
        limits = CounterMetricFamily(
            "manager_limit_refusals",
            "Refused for being over a plan's limit (or a global ceiling), by limit",
            labels=["limit"],
        )
        for limit in plans.COLUMNS:
            if limit != plans.BURST:  # a request over its burst counts as requestsPerSecond
                limits.add_metric([limit], self.svc.quotas.refusals.get(limit, 0))
        yield limits

    def _process(self) -> Iterator[Metric]:
        yield _gauge("manager_asyncio_tasks", "Tasks on the event loop", _tasks())
        yield _gauge("manager_threads", "Threads in the process", threading.active_count())
        yield _gauge("manager_open_fds", "Open file descriptors", _open_fds())
        yield _gauge("manager_resident_memory_bytes", "Resident set size", _rss_bytes())


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


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
