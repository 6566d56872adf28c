"""The broker's Redis as the workers' own plumbing reads it: one client per process, keys under
the broker's prefix, and the depth of a queue as kombu's Redis transport stores it."""

from __future__ import annotations

import redis
from django.conf import settings
from kombu.transport.redis import Channel

from core import redis_client

_clients: dict[str, redis.Redis] = {}


def broker_client() -> redis.Redis:
    """One client (and connection pool) per broker URL and process: the settle hook runs per task.
    redis-py's pool notices a fork and reconnects in the child."""
    url = settings.CELERY_BROKER_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis_client.client(url, socket_timeout=2, socket_connect_timeout=2)
    return client


def ops_key(name: str) -> str:
    """Under the broker's global key prefix, like kombu's own keys, so that stacks sharing one Redis
    database (the benchmark beside the test suite) never count each other's workers."""
    return settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "") + name


def _list_keys(queue: str) -> list[str]:
    """kombu's Redis transport keeps one list per priority step: `queue` for priority 0 and
    `queue + "\\x06\\x16" + step` for the others, all under the optional global key prefix."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    prefix = options.get("global_keyprefix", "")
    steps = options.get("priority_steps", Channel.priority_steps)
    return [f"{prefix}{queue}" if not step else f"{prefix}{queue}{Channel.sep}{step}" for step in steps]


def queue_depths(queues: list[str], client: redis.Redis) -> dict[str, int]:
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            for key in _list_keys(queue):
                pipe.llen(key)
        sizes = pipe.execute()
    steps = len(sizes) // len(queues) if queues else 0
    return {queue: sum(sizes[i * steps : (i + 1) * steps]) for i, queue in enumerate(queues)}
