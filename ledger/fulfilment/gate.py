"""The guard in front of a top-up provider, shared by every fulfilment worker through Redis: a
rate limit, a pause after a 429, and a circuit breaker.

A worker's turn, in this order (the breaker refuses cheaply while open, and a half-open trial
must not be spent on a batch the rate limit then refuses):

    if not gate.allow():                      # half-open: True for one caller, who sends one request
        retry(countdown=gate.wait_hint())
    n = gate.take(len(batch))                 # 0 while paused or when this second is used up
    ...send n; per answer: record_success(), record_failure() (unreachable, 5xx not processed),
    or pause(retry_after) on a 429.

Rate limit: `limits`' moving window over Redis, exact in any one second. Its windows are whole
seconds, so the burst (a sub-second notion) bounds what one take() grants: one worker cannot
claim the whole second and leave the others idle. Its timestamps are the workers' clocks.

Breaker: one Lua script over a hash (consecutive failures, open-until on Redis's clock) and a
half-open trial lease, not pybreaker's `CircuitRedisStorage`, which does not hold across
processes: its half-open state admits every caller (the one-trial guard is a process-local
lock), each process moves open to half-open by its own read then write, a process that notices
another's change to closed resets the shared failure count, `opened_at` is kept in whole
seconds, and on a Redis error it reports "closed" (or, with fallback "open", no `opened_at`, so
half-open): it fails open. Its `call()` also joins admission and outcome, where we send between.

Redis unreachable: nothing is sent (allow() False, take() 0) and the calls a worker makes on its
turn do not raise (they log); the charges wait held. The plain reads (paused_for, open_for,
breaker_state) raise redis.RedisError; wait_hint() and snapshot() do not.
"""

import logging
import math
import time
from functools import cache

import redis
from django.conf import settings
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import redis_client

logger = logging.getLogger(__name__)

# Returns {admitted, state, ms until half-open, consecutive failures}. One script, so that reading
# the state and acting on it cannot interleave with another worker's report.
_BREAKER = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local op, threshold, reset_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local state = 'closed'
if open_until > 0 then state = (now < open_until) and 'open' or 'half-open' end
local admitted = 0
local function open()
  open_until = now + reset_ms
  redis.call('HSET', KEYS[1], 'open_until', open_until)
  redis.call('DEL', KEYS[2])
  state = 'open'
end
if op == 'allow' then
  if state == 'closed' then admitted = 1
  -- The lease lets a trial whose worker died or never sent be replaced after reset_ms.
  elseif state == 'half-open' and redis.call('SET', KEYS[2], 1, 'NX', 'PX', reset_ms) then admitted = 1 end
elseif op == 'success' and state ~= 'open' then  -- a late success while open proves nothing new
  redis.call('DEL', KEYS[1], KEYS[2])
  state = 'closed'
elseif op == 'failure' then
  if state == 'half-open' then open()
  elseif state == 'closed' and redis.call('HINCRBY', KEYS[1], 'fails', 1) >= threshold then open() end
end
local left = (state == 'open') and (open_until - now) or 0
return {admitted, state, left, tonumber(redis.call('HGET', KEYS[1], 'fails') or '0')}
"""

# Keeps the longest pause: a shorter Retry-After never cuts one short.
_PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], 1, 'PX', ARGV[1]) end
return redis.call('PTTL', KEYS[1])
"""


class ProviderGate:
    def __init__(
        self,
        name: str,
        *,
        redis_url: str,
        rate: float,
        burst: int,
        failure_threshold: int,
        reset_timeout: float,
        key_prefix: str = "",
    ):
        self.name = name
        self.burst = burst
        self.failure_threshold = failure_threshold
        self.reset_ms = max(1, round(reset_timeout * 1000))
        base = f"{key_prefix}ledger:provider:{name}"
        self._pause_key, self._breaker_keys = f"{base}:pause", [f"{base}:breaker", f"{base}:trial"]
        # Fail fast when Redis is away: one retry (an idle connection it closed), no backoff.
        pool = redis_client.connection_pool(
            redis_url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1)
        )
        self._redis = redis.Redis(connection_pool=pool)
        self._breaker = self._redis.register_script(_BREAKER)
        self._pause = self._redis.register_script(_PAUSE)
        # A rate below 1 per second becomes one request per whole-second window.
        window = max(1, math.ceil(1 / rate))
        self._limit = RateLimitItemPerSecond(max(1, int(rate * window)), window, namespace="rate")
        # limits reads only the URL's scheme when given a pool (a sentinel:// one is fine).
        self._limiter = MovingWindowRateLimiter(RedisStorage(redis_url, connection_pool=pool, key_prefix=base))

    def _unreachable(self, action: str, exc: redis.RedisError) -> None:
        extra = {"event": "ledger.provider_gate_unreachable", "provider": self.name}
        logger.warning(
            "provider gate %s: Redis unreachable in %s (%r): not sending", self.name, action, exc, extra=extra
        )

    def _breaker_op(self, op: str) -> tuple[bool, str, float, int]:
        admitted, state, left_ms, fails = self._breaker(
            keys=self._breaker_keys, args=[op, self.failure_threshold, self.reset_ms]
        )
        return bool(admitted), state.decode(), left_ms / 1000, fails

    # --- rate limit and pause ------------------------------------------------------------------
    def take(self, wanted: int) -> int:
        """How many requests may be sent now (0..wanted), counted as sent."""
        try:
            if self._redis.pttl(self._pause_key) > 0:
                return 0
            for _ in range(3):  # another worker may take between the read and the hit
                n = min(wanted, self.burst, self._limiter.get_window_stats(self._limit).remaining)
                if n <= 0:
                    return 0
                if self._limiter.hit(self._limit, cost=n):
                    return n
        except redis.RedisError as exc:
            self._unreachable("take", exc)
        return 0

    def wait_hint(self) -> float:
        """Seconds until sending may resume: the pause, the open breaker or the full window."""
        try:
            stats = self._limiter.get_window_stats(self._limit)
            full = max(0.0, stats.reset_time - time.time()) if stats.remaining <= 0 else 0.0
            return max(full, self.paused_for(), self.open_for())
        except redis.RedisError as exc:
            self._unreachable("wait_hint", exc)
            return 1.0

    def pause(self, seconds: float) -> None:
        try:
            self._pause(keys=[self._pause_key], args=[max(1, round(seconds * 1000))])
        except redis.RedisError as exc:
            self._unreachable("pause", exc)  # nothing is sent while Redis is away anyway

    def paused_for(self) -> float:
        return max(0, self._redis.pttl(self._pause_key)) / 1000

    # --- circuit breaker -----------------------------------------------------------------------
    def allow(self) -> bool:
        try:
            return self._breaker_op("allow")[0]
        except redis.RedisError as exc:
            self._unreachable("allow", exc)
            return False

    def record_success(self) -> None:
        self._record("success")

    def record_failure(self) -> None:
        """The provider could not be reached, or answered a 5xx saying it did not process."""
        self._record("failure")

    def _record(self, op: str) -> None:
        try:
            self._breaker_op(op)
        except redis.RedisError as exc:
            self._unreachable(op, exc)  # lost: the breaker is a hint, and nothing is sent meanwhile

    def breaker_state(self) -> str:
        return self._breaker_op("state")[1]

    def open_for(self) -> float:
        return self._breaker_op("state")[2]

    def snapshot(self) -> dict:
        """For the ops endpoint and metrics."""
        try:
            _, state, open_for, fails = self._breaker_op("state")
            stats = self._limiter.get_window_stats(self._limit)
            paused_for = self.paused_for()
        except redis.RedisError as exc:
            self._unreachable("snapshot", exc)
            return {"name": self.name, "reachable": False}
        return {
            "name": self.name,
            "reachable": True,
            "state": state,
            "open_for": open_for,
            "paused_for": paused_for,
            "failures": fails,
            "window_used": self._limit.amount - stats.remaining,
            "window_limit": self._limit.amount,
        }


@cache
def gate_for(name: str) -> ProviderGate:
    """The process's gate for a provider (tests that change the settings call cache_clear())."""
    prefix = (getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}).get("global_keyprefix", "")
    return ProviderGate(
        name,
        redis_url=settings.CELERY_BROKER_URL,
        rate=getattr(settings, "PROVIDER_RATE_LIMIT", 2000),
        burst=getattr(settings, "PROVIDER_RATE_BURST", 200),
        failure_threshold=getattr(settings, "PROVIDER_BREAKER_FAILURES", 5),
        reset_timeout=getattr(settings, "PROVIDER_BREAKER_RESET", 5.0),
        key_prefix=prefix,
    )
