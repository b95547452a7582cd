"""The plan's request rate for proxied Hub calls: one token bucket per API token.

Runs after `AuthMiddleware` and reads the principal it left in the scope. The rate and
burst come from the token's organization's plan in `Quotas`' in-memory snapshot, so a
request costs no database round trip. Buckets live in this process: behind a balancer, N
replicas let a token through at up to N times its rate. Requests a Hub makes through its
own tunnel carry no token and are never limited.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from manager.principal import Principal
from manager.services import plans
from manager.services.quotas import PlanSnapshot, Quotas
from manager.web.errors import error_response

PROXIED = re.compile(r"^/api/v1/space/[^/]+/api/v1/sth/[^/]+/api/v1(/|$)")
IDLE_S = 300.0  # a bucket unused this long is forgotten (it is full again by then, or nearly)


class TokenBuckets:
    """`take` one request from a key's bucket of `burst` requests refilled at `rate`/s."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, most: int = 100_000):
        self.clock = clock
        self.most = most
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (level, last update)

    def take(self, key: str, rate: int, burst: int) -> float:
        """0.0 when the request may go, else the seconds until it could."""
        now = self.clock()
        level, last = self._buckets.get(key, (float(burst), now))
        level = min(float(burst), level + (now - last) * rate)
        if level >= 1.0:
            self._remember(key, level - 1.0, now)
            return 0.0
        self._remember(key, level, now)
        return (1.0 - level) / rate

    def _remember(self, key: str, level: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self.most:
            idle = [k for k, (_, last) in self._buckets.items() if now - last > IDLE_S]
            for k in idle or list(self._buckets)[: self.most // 10]:
                del self._buckets[k]
        self._buckets[key] = (level, now)


class RateLimiter:
    """The decision, shared by the middleware and the fast lane (manager/web/fast_lane.py),
    which must count against the same buckets."""

    def __init__(self, quotas: Quotas, buckets: TokenBuckets | None = None):
        self.quotas = quotas
        self.buckets = buckets or TokenBuckets()

    def refusal(self, who: Principal, snapshot: PlanSnapshot) -> Response | None:
        """The 429 for a proxied call by `who` over its plan's rate, or None to let it go."""
        token_id = who.token_id
        if not token_id:
            return None
        plan = snapshot.plan_of_org(who.org_id)
        rate = plan.get(plans.RATE)
        if rate is None:
            return None
        burst = plan.get(plans.BURST) or rate
        wait = self.buckets.take(token_id, rate, burst)
        if not wait:
            return None
        self.quotas.refused(plans.RATE)
        return error_response(
            429,
            f"This token is over its rate: {rate} requests/s with a burst of {burst}, "
            f"the limit of plan '{plan.name}'",
            {"retry-after": str(max(1, math.ceil(wait)))},
            plan=plan.name,
            limit=plans.RATE,
            max=rate,
            burst=burst,
        )


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: RateLimiter):
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope.get("state", {}) if scope["type"] == "http" else {}
        who: Principal | None = state.get("principal")
        # A request another replica forwarded was counted there (manager.web.peer); a Hub's
        # own calls carry no token and are never limited (nor wait for the plan snapshot).
        forwarded = "peer_epoch" in state
        untokened = who is None or not who.token_id
        if untokened or forwarded or not PROXIED.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        assert who is not None
        refusal = self.limiter.refusal(who, await self.limiter.quotas.current())
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)
