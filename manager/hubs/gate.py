"""Admits Hub tunnels and runs each one: key proof, Hub id, limits, control channel.

The tunnel layer calls `admit` with the CONNECT (or WebSocket) head; a 200 comes with
`run`, which lives as long as the tunnel: it opens the control channel, decides the Hub's
id, registers it, folds its messages into the Hub's state, and unregisters it at the end.
Requests the Hub opens itself go to the Space API as that Hub's Space (hub_requests.py).
The expensive part of an admission (key check, registration) waits for a slot of the
admission queue (admission.py), so a reconnect storm is admitted a few at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from dataclasses import replace
from typing import Any, NamedTuple

from starlette.types import ASGIApp

from manager import logs
from manager.common import MAX_DESCRIPTION
from manager.config import Settings
from manager.hubs import keys
from manager.hubs.admission import AdmissionBusy, AdmissionQueue, AdmissionSlot, BurstLog
from manager.hubs.control import ControlDecoder
from manager.hubs.endings import Ending
from manager.hubs.hello import HubHello, SourceSlot, space_of, tags_of, usable_key_id
from manager.hubs.hub_requests import hub_request_handler
from manager.hubs.limits import HubCeiling, HubLimit, HubQuotas
from manager.hubs.link import TunnelLink
from manager.hubs.registry import HubRegistry, LiveHub, tunnel_alive
from manager.hubs.routing import HubRoutes
from manager.hubs.state import ID_DROP, LIMIT_EXCEEDED, LOAD, STH_ID, TOPIC
from manager.hubs.store import HubStore
from manager.tunnel.connect import Admission, ConnectRequest
from manager.tunnel.errors import TunnelError
from manager.tunnel.http import ControlStream
from manager.tunnel.session import TunnelSession

log = logging.getLogger("manager.hubs")

FIRST_FRAME_DELAY_S = 0.25
CONTROL_OPEN_TIMEOUT_S = 5.0
NEWCOMER_READY_S = 2.0  # how long a refused Hub gets to send its first control line
DRAINING_RETRY_AFTER_S = 5  # what a draining replica tells a Hub (an STH retries every 2 s)
BUSY_RETRY_AFTER_S = (2, 10)  # a busy one: jittered, so a refused herd comes back spread out
_HUB_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,200}$")


class Refusal(NamedTuple):
    """Why a Hub with an open control channel is turned away: the control code it gets."""

    code: int
    ending: Ending


class HubGate:
    def __init__(
        self,
        settings: Settings,
        registry: HubRegistry,
        store: HubStore,
        secret: bytes,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.secret = secret
        self.proofs = keys.ProofCache()
        self.limiter = keys.FailureLimiter()
        self.proof_store_hits = 0
        self.tunnels_by_source: dict[str, int] = {}
        self.admitted = 0
        self.refused: dict[str, int] = {}
        self.control_messages: dict[int, int] = {}  # by code, as received
        self.draining = False  # manager.services.drain sets it: refuse new tunnels
        self.app: ASGIApp | None = None
        self.quotas: HubQuotas[Any] | None = None  # the plans (Services.build sets it)
        self.routes: HubRoutes | None = None  # other replicas' Hubs (Services.build sets it)
        # How many admissions check keys and register Hubs at once (manager.hubs.admission).
        self.admissions = AdmissionQueue(
            settings.max_admissions, settings.admission_queue, settings.admission_wait_s
        )
        self._busy_log = BurstLog()

    # admission

    async def admit(self, request: ConnectRequest) -> Admission:
        """The one admission of a Hub tunnel, CONNECT or WebSocket: the key, the limits, and
        what runs the tunnel once the carrier is up (or the status that refuses it)."""
        hello = await self.check(request.target, request.headers, request.peer)
        if isinstance(hello, int):
            return Admission(status=hello, retry_after=self._retry_after(hello))
        self.admitted += 1
        if request.websocket:
            hello = replace(hello, via_connector=True)
        carrier = "ws hub" if request.websocket else "hub"
        name = f"{carrier} {hello.requested_id or '?'}@{hello.space_id} from {request.peer}"

        async def run(session: TunnelSession) -> None:
            await self.run_hub(session, hello)

        return Admission(status=200, run=run, name=name, abandon=hello.slot.release)

    async def check(self, target: str, headers: dict[str, str], peer: str) -> HubHello | int:
        """The Hub's identity, or the status to refuse it with (403 stops a real Hub)."""
        if self.draining:
            return self._refuse("draining", 503)  # before the key: no scrypt run for it
        if self.limiter.blocked(peer):
            log.warning("tunnel from %s refused: too many failed key proofs", peer)
            return self._refuse("failed_proofs", 429)
        space_id = space_of(target)
        if space_id is None:
            log.warning("tunnel from %s refused: bad target %r", peer, target[:200])
            return self._refuse("bad_target", 403)
        try:
            async with self.admissions.slot():
                # Shielded: a Hub hanging up cancels its admission, and a database read
                # cancelled half-way costs its pooled connection (torn down, not returned).
                key_id = await asyncio.shield(
                    self._check_key(space_id, headers.get("authorization", ""))
                )
        except AdmissionBusy as exc:
            return self._busy(peer, exc)
        if self.draining:
            return self._refuse("draining", 503)  # it began while this one waited
        if key_id is None:
            self.limiter.failed(peer)
            log.warning("tunnel from %s to %s refused: wrong or unknown key", peer, space_id)
            return self._refuse("key", 403)
        limit = self.settings.max_tunnels_per_source
        if limit and self.tunnels_by_source.get(peer, 0) >= limit:
            log.warning(
                "tunnel from %s refused: %d tunnels from this address is the limit "
                "(MANAGER_MAX_TUNNELS_PER_SOURCE)",
                peer,
                limit,
            )
            return self._refuse("per_source_limit", 429)
        return HubHello(
            space_id=space_id,
            requested_id=headers.get("x-sth-id", "").strip(),
            description=headers.get("x-sth-description", "")[:MAX_DESCRIPTION],
            tags=tags_of(headers.get("x-sth-tags", "")),
            key_id=key_id,
            source=peer,
            slot=SourceSlot(self.tunnels_by_source, peer),
        )

    def _refuse(self, reason: str, status: int) -> int:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return status

    def _busy(self, peer: str, exc: AdmissionBusy) -> int:
        """A tunnel the admission queue had no room or time for: 503, and a line per burst."""
        count = self._busy_log.event(asyncio.get_running_loop().time())
        if count:
            q = self.admissions
            log.warning(
                "admissions busy: %d tunnel(s) turned away (latest from %s: %s); %d admitting, "
                "%d waiting (MANAGER_MAX_ADMISSIONS %d, MANAGER_ADMISSION_QUEUE %d, "
                "MANAGER_ADMISSION_WAIT_S %g)",
                count,
                peer,
                exc.why,
                q.running,
                q.waiting,
                q.limit,
                q.max_waiting,
                q.max_wait_s,
            )
        return self._refuse("busy", 503)

    def _retry_after(self, status: int) -> int | None:
        if status != 503:
            return None
        return DRAINING_RETRY_AFTER_S if self.draining else random.randint(*BUSY_RETRY_AFTER_S)

    async def _check_key(self, space_id: str, authorization: str) -> int | None:
        if authorization[:7].lower() == "bearer ":
            value = authorization[7:].strip()
            if not keys.key_matches(self.secret, value):
                return None
            return usable_key_id(await self.store.access_key(value[: keys.PREFIX_LEN]), space_id)
        try:
            proof = keys.parse_authorization(authorization)
        except keys.ProofFormatError:
            return None
        # Any prefix has a derivable key, so an unknown prefix costs the same scrypt run as a
        # wrong proof for a known one: timing does not tell which prefixes exist.
        key = keys.derive_key(self.secret, proof.key_prefix)
        tag = keys.proof_tag(key, proof.value)
        known = self.proofs.lookup(proof.value) == proof.key_prefix
        row = await self.store.access_key(proof.key_prefix)
        stored = None if known else await self.store.proof_key_id(tag)
        key_id = usable_key_id(row, space_id)
        if not known and stored is not None and stored == key_id:
            self.proof_store_hits += 1
            self.proofs.remember(proof.value, proof.key_prefix)
            known = True
        if not known and await self.proofs.compute(proof, key) and key_id is not None:
            await self.store.remember_proof(tag, key_id)
            known = True
        return key_id if known else None

    # the life of one tunnel

    async def run_hub(self, session: TunnelSession, hello: HubHello) -> None:
        try:
            await self._run_hub(session, hello)
        finally:
            hello.slot.release()

    async def _run_hub(self, session: TunnelSession, hello: HubHello) -> None:
        session.on_channel = hub_request_handler(lambda: self.app, hello.space_id)
        await asyncio.sleep(FIRST_FRAME_DELAY_S)
        try:
            channel = await session.open_channel(timeout=CONTROL_OPEN_TIMEOUT_S)
            control = ControlStream(channel)
            await control.start()
        except TunnelError as exc:
            log.warning("%s: no control channel (%s); closing", session.name, exc)
            return
        link = TunnelLink(
            session,
            control,
            self.settings.max_requests_per_hub,
            self.settings.channel_open_timeout_s,
        )
        # The admission's second half (Hub id, registry, connect record) in a slot of its
        # own: the 200, the first-frame delay and the control channel's round trip between
        # the halves are network waits that would hold a slot for nothing.
        try:
            slot = await self.admissions.enter(finishing=True)
        except AdmissionBusy as exc:
            self._busy(hello.source, exc)
            session.close(Ending.BUSY)
            return
        try:
            if session.close_reason is not None:
                return  # the Hub left while it waited: no id, no records for it
            hub = await self._attach(session, hello, link)
            if isinstance(hub, Refusal):
                slot.release()  # before _stop_newcomer, which waits for the Hub
                await _stop_newcomer(link, *hub)
                return
            await self._serve(session, hello, link, hub, slot)
        finally:
            slot.release()

    async def _attach(
        self, session: TunnelSession, hello: HubHello, link: TunnelLink
    ) -> LiveHub | Refusal:
        """The Hub's id and its place in the registry, or why it is refused."""
        hub_id = await self._claim_id(hello)
        if isinstance(hub_id, Refusal):
            return hub_id
        logs.hub_context.set((hello.space_id, hub_id))  # this task's log lines name the Hub
        link.client.hub_id = hub_id  # known now; the client's errors name the Hub
        hub = LiveHub(hello.space_id, hub_id, link, access_key_id=hello.key_id, source=hello.source)
        hub.announces_topic_posts = not hello.via_connector
        session.name = f"hub {hub_id}@{hello.space_id}"
        if not self.registry.attach(hub):
            return Refusal(ID_DROP, Ending.ID_TAKEN)
        return hub

    async def _serve(
        self,
        session: TunnelSession,
        hello: HubHello,
        link: TunnelLink,
        hub: LiveHub,
        slot: AdmissionSlot,
    ) -> None:
        """An attached Hub from its connect record (the admission's last step, still in its
        slot) to its disconnect record."""
        reason = "tunnel closed"
        try:
            await self.store.connected(hub, hello.description, hello.tags)
            slot.release()
            # The silence clock starts now: in a join storm the connect record can take
            # longer than a Hub's LOAD interval, and its LOAD lines wait for _read_control.
            hub.connected_at = time.monotonic()
            log.info("%s connected from %s", session.name, hello.source)
            if hub.hub_id != hello.requested_id:
                await link.send_control(STH_ID, {"id": hub.hub_id})
            reason = await self._read_control(hub, link.control, session)
        finally:
            reason = session.close_reason or reason
            session.close(reason)
            hello.slot.release()  # the socket is gone; its disconnect record may queue a while
            log.info("%s disconnected: %s", session.name, reason)
            try:
                await asyncio.shield(self.store.disconnected(hub, reason))
            finally:
                self.registry.detach(hub)
                await link.release()

    async def _claim_id(self, hello: HubHello) -> str | Refusal:
        requested = hello.requested_id
        if requested and not _HUB_ID.match(requested):
            requested = ""
        if requested:
            existing = self.registry.get(hello.space_id, requested)
            if existing is not None:
                if tunnel_alive(existing):
                    log.warning(
                        "hub %s@%s: id already connected; dropping the newcomer",
                        requested,
                        hello.space_id,
                    )
                    return Refusal(ID_DROP, Ending.ID_TAKEN)
                await existing.link.close(Ending.REPLACED)
                self.registry.detach(existing)
            elif self.routes is not None and await self.routes.held_elsewhere(
                hello.space_id, requested
            ):
                log.warning(
                    "hub %s@%s: id connected on another replica; dropping the newcomer",
                    requested,
                    hello.space_id,
                )
                return Refusal(ID_DROP, Ending.ID_TAKEN)
        limit = await self._hub_limit(hello.space_id)
        hub_id = requested
        if not hub_id:
            live = {h.hub_id for h in self.registry.in_space(hello.space_id)}
            hub_id = await self.store.new_hub_id(hello.space_id, live)
        # Hubs other replicas hold count too (read first: a storm of admissions on several
        # replicas at once may overshoot by a few; on one replica it cannot, as below).
        elsewhere = 0
        if self.routes is not None and not limit.allows(0, UNLIMITED):
            elsewhere = await self.routes.connected_elsewhere(hello.space_id)
        # No await from this count to the caller's registry.attach: two Hubs admitted at
        # once cannot both take the last place.
        connected = self.registry.count(hello.space_id) + elsewhere
        if not limit.allows(connected):
            log.warning(
                "space %s: %d Hubs connected, the limit (%s); refusing %s",
                hello.space_id,
                connected,
                limit.describe(),
                hub_id,
            )
            if self.quotas is not None:
                self.quotas.hub_refused(hello.space_id, hub_id, limit, hello.source)
            return Refusal(LIMIT_EXCEEDED, Ending.HUB_LIMIT)
        return hub_id

    async def _hub_limit(self, space_id: str) -> HubLimit:
        """The Space's Hub limit: its plan's (or its own), under MANAGER_HUB_LIMIT."""
        if self.quotas is None:
            return HubCeiling(self.settings.hub_limit)
        limit: HubLimit = await self.quotas.hub_limit(space_id, self.settings.hub_limit)
        return limit

    async def _read_control(self, hub: LiveHub, control: ControlStream, s: TunnelSession) -> str:
        decoder = ControlDecoder()
        counts = self.control_messages

        def received(chunk: bytes) -> None:
            for msg in decoder.feed(chunk):
                code = msg.code if STH_ID <= msg.code <= TOPIC else 0  # bounded keys
                counts[code] = counts.get(code, 0) + 1
                if hub.state.apply(msg.code, msg.payload):
                    if msg.code == LOAD:
                        hub.load_dirty = True
                    elif msg.code == TOPIC:
                        hub.topic_announcements.received(msg.payload)
            if decoder.bad_lines and decoder.last_error:
                # Called from the tunnel's reading, not this task: name the Hub in the line.
                named = logs.hub_context.set((hub.space_id, hub.hub_id))
                log.warning("%s: skipped a control line: %s", s.name, decoder.last_error)
                logs.hub_context.reset(named)
                decoder.last_error = None

        control.listen(received)
        reason = await control.ended()
        return s.close_reason or reason


async def _stop_newcomer(link: TunnelLink, code: int, reason: str) -> None:
    """Refuse a Hub that has just opened its control channel (ID_DROP, LIMIT_EXCEEDED).

    STH 1.0.1 sets its control stream up across an await (its first LOAD); a tunnel closed
    before that crashes the Hub process (TypeError in `handleCommunicationRequest`) instead
    of letting it stop. So the close waits, briefly, for the Hub's first control line."""
    link.control.listen(lambda _chunk: None)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(link.control.heard.wait(), NEWCOMER_READY_S)
    await link.send_and_close(code, reason)


UNLIMITED = 1 << 40  # more Hubs than any limit allows: `allows(0, UNLIMITED)` means none
