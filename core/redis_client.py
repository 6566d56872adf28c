"""Every Redis client and connection pool of the project is built here, from a URL, so that
whatever `REDIS_URL` names, the web, the workers and the scripts reach the server Celery uses
and follow it through a Sentinel failover.

Two kinds of URL:

- `redis://`, `rediss://`, `unix://`: as redis-py reads them (`ConnectionPool.from_url`).
- Celery's Sentinel form, kombu's syntax:
  `sentinel://[[user]:password@]host:port[/db];sentinel://host2:port2;...`
  Every `;`-separated part names a sentinel (port 26379 when none is given); the credentials
  and database number are read from the first part only, as kombu does, and are the Redis
  master's, not the sentinels'. The master's name is `REDIS_SENTINEL_MASTER` (Celery gets it as
  the transport option `master_name`), the sentinels' own password `REDIS_SENTINEL_PASSWORD`
  (kombu's `sentinel_kwargs`). TLS to a Sentinel-managed master is not supported here.

A Sentinel pool is redis-py's `SentinelConnectionPool`: each of its connections asks the
sentinels for the master's address when it connects, so after a failover the next reconnect
reaches the promoted replica, and a connection still open to a demoted master fails
(`READONLY` becomes a ConnectionError) and is replaced. Callers handle `redis.RedisError` as
they do for a plain Redis that went away."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
from django.conf import settings
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel"
SENTINEL_PORT = 26379
DEFAULT_MASTER_NAME = "mymaster"


@dataclass(frozen=True)
class SentinelURL:
    sentinels: list[tuple[str, int]]
    db: int
    username: str | None
    password: str | None


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SENTINEL_SCHEME


def parse_sentinel_url(url: str) -> SentinelURL:
    parts = [urlsplit(part) for part in url.split(";") if part.strip()]
    if not parts or any(part.scheme.lower() != SENTINEL_SCHEME for part in parts):
        raise ValueError(f"not a sentinel:// URL list: {redact(url)}")
    first = parts[0]
    path = first.path.lstrip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise ValueError(f"the database of {redact(url)} is not a number: {path!r}") from None
    return SentinelURL(
        sentinels=[(part.hostname or "127.0.0.1", part.port or SENTINEL_PORT) for part in parts],
        db=db,
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
    )


def connection_pool(
    url: str, *, master_name: str | None = None, sentinel_password: str | None = None, **connection_kwargs
) -> redis.ConnectionPool:
    """A pool for `url`; `connection_kwargs` are redis-py's (timeouts, retry). `master_name` and
    `sentinel_password` default to the settings (scripts without Django pass them)."""
    if not is_sentinel_url(url):
        return redis.ConnectionPool.from_url(url, **connection_kwargs)
    parsed = parse_sentinel_url(url)
    if master_name is None:
        master_name = getattr(settings, "REDIS_SENTINEL_MASTER", DEFAULT_MASTER_NAME)
    if sentinel_password is None:
        sentinel_password = getattr(settings, "REDIS_SENTINEL_PASSWORD", "")
    socket_options = {k: v for k, v in connection_kwargs.items() if k.startswith("socket_")}
    credentials = {"db": parsed.db, "username": parsed.username, "password": parsed.password}
    sentinel = Sentinel(
        parsed.sentinels,
        sentinel_kwargs=sentinel_kwargs(password=sentinel_password, **socket_options),
        **credentials,
        **connection_kwargs,
    )
    return sentinel.master_for(master_name).connection_pool


def sentinel_kwargs(*, password: str = "", **socket_options) -> dict:
    """Options of the connections to the sentinels themselves (redis-py's and kombu's
    `sentinel_kwargs`): the caller's socket timeouts (a sentinel that hangs must not hang the
    caller), the sentinels' password if they have one, and no retry: redis-py's default retries
    a sentinel that does not answer ten times, with back-off (3 s for one that refuses), before
    it asks the next one.

    Plain values only: Celery gets this dict in its transport options, which every worker sends
    as JSON in its `stats` reply (`celery inspect stats`, Flower's worker pages). "No retry" is
    therefore `retry=None`, with which redis-py gives each connection `Retry(NoBackoff(), 0)`
    (no `retry_on_error` either), not a `Retry` object: one made every worker drop every `stats`
    request with `EncodeError`."""
    options: dict = {**socket_options, "retry": None}
    if password:
        options["password"] = password
    return options


def client(url: str, **kwargs) -> redis.Redis:
    """A client over its own pool for `url` (see `connection_pool` for the arguments)."""
    return redis.Redis(connection_pool=connection_pool(url, **kwargs))


def redact(url: str) -> str:
    """The URL without its passwords, for messages."""
    parts = []
    for part in url.split(";"):
        split = urlsplit(part)
        if split.password:
            part = part.replace(f":{split.password}@", ":***@", 1)
        parts.append(part)
    return ";".join(parts)
