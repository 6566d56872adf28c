"""Each worker process announces the queues it consumes in one Redis hash, so the ops view can
count consumers per shard quickly and without a broadcast.

Why not `celery inspect active_queues`: a solo-pool worker answers control messages only between
tasks, so a busy worker looks dead, and every call waits for its timeout. Why a thread rather than
Celery's own heartbeat: that heartbeat also runs on the worker's event loop, which a running task
blocks. A daemon thread refreshes the entry every few seconds whatever the worker is doing; a
worker that dies without shutting down goes stale after `STALE_AFTER` seconds, and one that shuts
down cleanly removes its entry at once.

Timestamps come from the Redis server's clock, so web and workers on different hosts agree."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading

import redis
from celery.signals import worker_ready, worker_shutdown

from workers.broker import broker_client, ops_key

logger = logging.getLogger(__name__)

WORKERS_KEY = "ledger:ops:workers"
# A SIGKILLed worker stops counting as a consumer within STALE_AFTER seconds.
INTERVAL = 1.0
STALE_AFTER = 5.0

_state: dict = {}


def _announce(client: redis.Redis, hostname: str, queues: list[str], **extra) -> None:
    entry = {"queues": queues, "pid": os.getpid(), "seen": client.time()[0], **extra}
    client.hset(ops_key(WORKERS_KEY), hostname, json.dumps(entry))


def announce_standby(name: str, shards: list[int]) -> None:
    """A standby waiting for a shard group (`manage.py shardworker --standby`), under the node name
    its worker will have, so the worker's own heartbeat replaces the entry once it takes over."""
    _announce(broker_client(), f"{name}@{socket.gethostname()}", [], standby_for=shards)


def _beat(hostname: str, queues: list[str], stop: threading.Event) -> None:
    client = broker_client()
    while True:
        try:
            _announce(client, hostname, queues)
        except redis.RedisError as exc:  # the broker is down: the worker itself reconnects; keep trying
            logger.warning("worker heartbeat to Redis failed: %s", exc)
        if stop.wait(INTERVAL):
            return


@worker_ready.connect
def start_heartbeat(sender=None, **kwargs) -> None:
    hostname = sender.hostname
    queues = sorted(sender.app.amqp.queues.consume_from)
    stop = threading.Event()
    thread = threading.Thread(target=_beat, args=(hostname, queues, stop), name="ledger-ops-heartbeat", daemon=True)
    _state.update(hostname=hostname, stop=stop, thread=thread)
    thread.start()


@worker_shutdown.connect
def stop_heartbeat(sender=None, **kwargs) -> None:
    stop = _state.get("stop")
    if stop is None:
        return
    stop.set()
    _state["thread"].join(timeout=3)
    try:
        broker_client().hdel(ops_key(WORKERS_KEY), _state["hostname"])
    except redis.RedisError as exc:
        logger.warning("could not remove worker heartbeat: %s", exc)


def live_entries(client: redis.Redis | None = None) -> dict[str, dict]:
    """hostname -> its entry, for every worker or standby seen in the last `STALE_AFTER` seconds."""
    client = client or broker_client()
    now = client.time()[0]
    live = {}
    for hostname, raw in client.hgetall(ops_key(WORKERS_KEY)).items():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if now - entry.get("seen", 0) <= STALE_AFTER:
            live[hostname.decode()] = entry
    return live


def live_workers(client: redis.Redis | None = None) -> dict[str, list[str]]:
    """hostname -> queues consumed, for every live worker (a waiting standby consumes none)."""
    return {host: entry.get("queues", []) for host, entry in live_entries(client).items()}
