"""Rate limits kept in Redis, shared by every web process: per-seller request rates and failed
logins per username and per client address.

Fixed windows counted with one INCR (+ EXPIRE NX) round trip. DRF's own throttles keep a list of
every request's timestamp in the cache, which at the thousands of requests a minute a seller may
legitimately send costs more than the request itself. If Redis does not answer, requests are let
through: a rate limit is protection, not correctness, and must not take the API down."""

import logging
from functools import cache

import redis
from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from core.authentication import acting_seller_id
from core.redis_script import ThreadScript

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """ "100/s", "6000/min", "10/15m" -> (limit, window seconds)."""
    count, _, period = rate.partition("/")
    digits = "".join(ch for ch in period if ch.isdigit()) or "1"
    unit = period.lstrip("0123456789")[:1]
    return int(count), int(digits) * _PERIODS[unit]


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.THROTTLE_REDIS_URL or settings.REDIS_URL,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        health_check_interval=30,
    )


# INCR and set the window's expiry on its first event, in one round trip and one command.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
"""


# On every request: over a bare connection per thread (core/redis_script.py), not the client.
_hit_script = ThreadScript(
    _HIT_SCRIPT,
    lambda: settings.THROTTLE_REDIS_URL or settings.REDIS_URL,
    socket_timeout=0.5,
    socket_connect_timeout=0.5,
)


def _hit(key: str, window: int) -> tuple[int, int]:
    """Count one more event in the current window of `key`; returns (count, seconds left)."""
    count, ttl = _hit_script(keys=[key], args=[window])
    if ttl < 0:  # a key left without expiry (should not happen): give it one now
        _client().expire(key, window)
        ttl = window
    return int(count), max(int(ttl), 1)


def _peek(*keys: str) -> list[tuple[int, int]]:
    pipe = _client().pipeline(transaction=False)
    for key in keys:
        pipe.get(key)
        pipe.ttl(key)
    values = pipe.execute()
    return [(int(values[i] or 0), max(int(values[i + 1]), 1)) for i in range(0, len(values), 2)]


def seller_request_allowed(seller_id: int) -> tuple[bool, int | None]:
    """Count one request of this seller (`SELLER_THROTTLE_RATE`): (allowed, seconds to wait)."""
    limit, window = parse_rate(settings.SELLER_THROTTLE_RATE)
    try:
        count, wait = _hit(f"throttle:seller:{seller_id}", window)
    except redis.RedisError:
        logger.warning("throttle store unavailable; letting the request through")
        return True, None
    return count <= limit, wait


class SellerRateThrottle(BaseThrottle):
    """Requests per seller, whichever key or token it uses (`SELLER_THROTTLE_RATE`)."""

    def allow_request(self, request, view) -> bool:
        seller_id = acting_seller_id(request.user)
        if seller_id is None:
            return True
        allowed, self._wait = seller_request_allowed(seller_id)
        return allowed

    def wait(self):
        return getattr(self, "_wait", None)


def _login_keys(username: str, address: str) -> list[tuple[str, str]]:
    return [
        (f"throttle:login:user:{username.lower()[:150]}", settings.LOGIN_THROTTLE_USERNAME_RATE),
        (f"throttle:login:addr:{address}", settings.LOGIN_THROTTLE_ADDRESS_RATE),
    ]


def client_address(request) -> str:
    """The client's address, honoring `NUM_PROXIES` as DRF's throttles do."""
    return (
        BaseThrottle().get_ident(request)
        if api_settings.NUM_PROXIES is not None
        else request.META.get("REMOTE_ADDR", "")
    )


def login_wait(*, username: str, address: str) -> int | None:
    """Seconds to wait before another login attempt is allowed, or None."""
    keys = _login_keys(username, address)
    try:
        counts = _peek(*(key for key, _ in keys))
    except redis.RedisError:
        return None
    waits = [ttl for (count, ttl), (_, rate) in zip(counts, keys, strict=True) if count >= parse_rate(rate)[0]]
    return max(waits) if waits else None


def login_failed(*, username: str, address: str) -> None:
    try:
        for key, rate in _login_keys(username, address):
            _hit(key, parse_rate(rate)[1])
    except redis.RedisError:
        logger.warning("throttle store unavailable; a failed login was not counted")
