"""The shared objects one manager process runs on, built once and handed to web and CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from manager.config import Settings
from manager.db.engine import make_engine, make_sessionmaker
from manager.hubs.gate import HubGate
from manager.hubs.peers import peer_secret
from manager.hubs.registry import HubRegistry
from manager.hubs.routing import HubRoutes
from manager.hubs.store import HubStore
from manager.hubs.supervisor import HubSupervisor
from manager.replicas.events import Events
from manager.replicas.lease import ReplicaLease
from manager.services import hub_admin
from manager.services.access_keys import AccessKeyService
from manager.services.audit_stream import AuditWriter
from manager.services.drain import Drain
from manager.services.held_hubs import HeldHubs
from manager.services.metrics import Metrics
from manager.services.quotas import Quotas
from manager.services.readiness import Readiness, database_check
from manager.services.server_secret import load_or_create_secret
from manager.services.space_view import HubListing
from manager.services.store import SequenceStore
from manager.services.tokens import TokenService
from manager.services.topic_router import TopicRouter
from manager.services.topics import TopicBoard

KEYS_REVOKED = "keys_revoked"


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secret: bytes
    tokens: TokenService
    keys: AccessKeyService
    registry: HubRegistry
    store: HubStore
    supervisor: HubSupervisor
    gate: HubGate
    audit: AuditWriter
    store_packages: SequenceStore
    topics: TopicBoard
    router: TopicRouter
    quotas: Quotas
    routes: HubRoutes
    lease: ReplicaLease
    peer_secret: str
    events: Events
    drain: Drain
    readiness: Readiness
    metrics: Metrics
    held_hubs: HeldHubs
    listing: HubListing = field(default_factory=HubListing)
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        engine = make_engine(settings.effective_database_url)
        sessions = make_sessionmaker(engine)
        secret = load_or_create_secret(settings.data_dir, settings.secret)
        registry = HubRegistry(settings.healthy_after_s)
        board = TopicBoard()
        store = HubStore(sessions, settings.replica)
        keys = AccessKeyService(secret)
        supervisor = HubSupervisor(registry, store, load_flush_s=settings.load_flush_s)
        events = Events(settings.effective_database_url)
        keys.on_revoked = lambda space_id, rows: events.publish(
            KEYS_REVOKED, space=space_id, keys=[r.id for r in rows]
        )
        events.on(KEYS_REVOKED, supervisor.on_keys_revoked)
        events.on(hub_admin.DROP_EVENT, lambda e: hub_admin.on_drop_event(registry, e))
        gate = HubGate(settings, registry, store, secret)
        peers = peer_secret(secret, settings.peer_secret)
        routes = HubRoutes(registry, sessions, settings.replica, peers)
        gate.routes = routes
        audit = AuditWriter(sessions)
        gate.quotas = quotas = Quotas(sessions)
        quotas.audit = audit
        drain = Drain(
            registry, gate, grace_s=settings.drain_grace_s, window_s=settings.drain_window_s
        )
        readiness = Readiness()
        readiness.add("database", database_check(engine), cache_s=1.0)
        readiness.add("draining", drain.ready)
        lease = ReplicaLease(
            sessions, registry, settings.replica, settings.effective_peer_url, settings.lease_s
        )
        readiness.add("lease", lease.is_held)
        routes.others_alive = lambda: lease.others_alive
        metrics = Metrics()
        metrics.watch_database(engine)
        svc = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            secret=secret,
            tokens=TokenService(sessions),
            keys=keys,
            registry=registry,
            store=store,
            supervisor=supervisor,
            gate=gate,
            audit=audit,
            store_packages=SequenceStore(
                sessions, settings.data_dir / "store", settings.store_max_bytes, quotas.refused
            ),
            topics=board,
            router=TopicRouter(registry, board, routes=routes),
            quotas=quotas,
            routes=routes,
            lease=lease,
            peer_secret=peers,
            events=events,
            drain=drain,
            readiness=readiness,
            metrics=metrics,
            held_hubs=HeldHubs(registry),
        )
        metrics.read_live(svc)
        store.on_rows_changed = svc.listing.invalidate
        return svc

    async def aclose(self) -> None:
        await self.events.stop()
        await self.quotas.aclose()
        await self.engine.dispose()
