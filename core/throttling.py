"""Rate limits kept in Redis, shared by every web process: per-seller request rates, and failed
logins (the rule is below, above `login_wait`).

Fixed windows counted with one INCR (+ EXPIRE NX) round trip. DRF's own throttles keep a list of
every request's timestamp in the cache, which at the thousands of requests a minute a seller may
legitimately send costs more than the request itself. If Redis does not answer, requests are let
through: a rate limit is protection, not correctness, and must not take the API down."""

import logging
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from core import redis_client
from core.redis_script import ThreadScript
from core.roles import seller_of

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
    return redis_client.client(
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
        seller = seller_of(request.user)
        if seller is None:
            return True
        allowed, self._wait = seller_request_allowed(seller.pk)
        return allowed

    def wait(self):
        return getattr(self, "_wait", None)


# Failed logins, the same rule for the API's login and the admin site's (core/admin.py), on the
# same counters, so neither is a way around the other:
# - per (username, client address), LOGIN_THROTTLE_RATE failures: that address is refused for that
#   username until the window ends. Only an address's own failures count, so no one can lock
#   anyone else out;
# - per client address, LOGIN_THROTTLE_ADDRESS_RATE failures over all usernames: that address is
#   refused (one address trying many accounts);
# - per username, LOGIN_THROTTLE_USERNAME_RATE failures from all addresses: guessing is slowed,
#   never refused. From then on each failure makes its own address wait before trying that
#   username again, LOGIN_THROTTLE_DELAY seconds doubling with each of that address's failures.
#   An address that has not just failed is never made to wait, so the right password from
#   the user's own address still logs in while the username is under attack.
# A successful login clears its address's count and wait for that username.


@dataclass(frozen=True)
class _LoginKeys:
    pair: str
    address: str
    username: str
    delay: str


def _login_keys(username: str, address: str) -> _LoginKeys:
    # The address first: it never holds "|", so no (username, address) pair can name another's key.
    user = username.lower()[:150]
    return _LoginKeys(
        pair=f"throttle:login:pair:{address}|{user}",
        address=f"throttle:login:addr:{address}",
        username=f"throttle:login:user:{user}",
        delay=f"throttle:login:delay:{address}|{user}",
    )


def client_address(request) -> str:
    """The client's address, honoring `NUM_PROXIES` as DRF's throttles do: the address the
    nearest of that many trusted proxies saw (0: the connection's own address)."""
    return (
        BaseThrottle().get_ident(request)
        if api_settings.NUM_PROXIES is not None
        else request.META.get("REMOTE_ADDR", "")
    )


def login_wait(*, username: str, address: str) -> int | None:
    """Seconds this address must wait before trying this username again, or None."""
    keys = _login_keys(username, address)
    try:
        (pair, pair_ttl), (by_address, address_ttl), (delay, delay_ttl) = _peek(keys.pair, keys.address, keys.delay)
    except redis.RedisError:
        return None
    waits = []
    if pair >= parse_rate(settings.LOGIN_THROTTLE_RATE)[0]:
        waits.append(pair_ttl)
    if by_address >= parse_rate(settings.LOGIN_THROTTLE_ADDRESS_RATE)[0]:
        waits.append(address_ttl)
    if delay:
        waits.append(delay_ttl)
    return max(waits) if waits else None


def login_failed(*, username: str, address: str) -> None:
    keys = _login_keys(username, address)
    pair_limit, pair_window = parse_rate(settings.LOGIN_THROTTLE_RATE)
    user_limit, user_window = parse_rate(settings.LOGIN_THROTTLE_USERNAME_RATE)
    try:
        pair_failures, _ = _hit(keys.pair, pair_window)
        _hit(keys.address, parse_rate(settings.LOGIN_THROTTLE_ADDRESS_RATE)[1])
        username_failures, _ = _hit(keys.username, user_window)
        if username_failures >= user_limit:
            delay = min(settings.LOGIN_THROTTLE_DELAY * 2 ** (pair_failures - 1), pair_window)
            _client().set(keys.delay, 1, ex=max(int(delay), 1))
    except redis.RedisError:
        logger.warning("throttle store unavailable; a failed login was not counted")


def login_succeeded(*, username: str, address: str) -> None:
    keys = _login_keys(username, address)
    try:
        _client().delete(keys.pair, keys.delay)
    except redis.RedisError:
        logger.warning("throttle store unavailable; a login's failure count was not cleared")
