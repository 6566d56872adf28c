"""Which process consumes a shard group: a lease in Redis, so a standby on another host knows when
to take over.

Every shard worker holds the lease of its group (the sorted shard numbers it consumes) while it
lives: a thread of its own (`LeaseKeeper`, started with the shard watch in workers/recovery.py)
sets it every second for `LEDGER_SHARD_LEASE_SECONDS`, and a clean shutdown deletes it. A standby (`manage.py shardworker INDEX --standby`) consumes
nothing while the lease exists; once it is gone (the active process was SIGKILLed, its host lost
power or its link, or it shut down) the standby starts the same worker, which then holds the lease
and recovers the group's shards from PostgreSQL like any worker that (re)connects.

The active always sets the lease; a standby that became active only renews a lease that is still
its own. So when the original active comes back, it writes its name and the standby, seeing
another owner, shuts down (warmly: its running task finishes) and is restarted by its process
manager as a standby again. While both consume, for about a second, the account row lock keeps the
two settlers apart (docs/architecture.md): a lease decides who does the work, never whether the
money is right. A Redis that lost the lease (a restart, a failover) costs at most the same overlap."""

from __future__ import annotations

import logging
import os
import signal
import threading

import redis
from django.conf import settings

from workers.broker import broker_client, ops_key

logger = logging.getLogger(__name__)
# Set by `manage.py shardworker --standby` for the worker it starts once the lease is free.
STANDBY_ENV = "LEDGER_SHARD_STANDBY"
BROKER_ERRORS = (redis.RedisError, OSError)
# Every second, a fifth of the default lease: a worker must miss several renewals to lose it.
RENEW_INTERVAL = 1.0

# KEYS: lease; ARGV: owner, milliseconds. Renew the lease if it is ours or free; else its owner.
_RENEW_OWN = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return owner end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# KEYS: lease; ARGV: owner. Delete the lease only if it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(shards: list[int]) -> str:
    return ops_key("ledger:shard-lease:" + ",".join(str(k) for k in sorted(shards)))


def _ttl_ms() -> int:
    return int(settings.LEDGER_SHARD_LEASE_SECONDS * 1000)


def hold(shards: list[int], owner: str, *, standby: bool, client: redis.Redis | None = None) -> str | None:
    """Set or renew the group's lease for `owner`. An active process always takes it; a standby
    keeps it only while it is its own. Returns the other owner a standby must yield to, or None."""
    client = client or broker_client()
    if not standby:
        client.set(lease_key(shards), owner, px=_ttl_ms())
        return None
    other = client.eval(_RENEW_OWN, 1, lease_key(shards), owner, _ttl_ms())
    return other.decode() if other else None


def release(shards: list[int], owner: str, client: redis.Redis | None = None) -> None:
    client = client or broker_client()
    client.eval(_RELEASE, 1, lease_key(shards), owner)


def holder(shards: list[int], client: redis.Redis | None = None) -> str | None:
    owner = (client or broker_client()).get(lease_key(shards))
    return owner.decode() if owner else None


class LeaseKeeper(threading.Thread):
    """A shard worker's thread that holds its group's lease; a thread of its own, so a slow
    database call in the shard watch never lets the lease lapse."""

    def __init__(self, shards: list[int], owner: str, *, standby: bool):
        super().__init__(name="ledger-shard-lease", daemon=True)
        self.shards, self.owner, self.standby = shards, owner, standby
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                active = hold(self.shards, self.owner, standby=self.standby)
            except BROKER_ERRORS as exc:  # the broker is away: nobody can take over meanwhile
                logger.debug("shard lease: %s", exc)
            else:
                if active is not None:
                    self.yield_to(active)
                    return
            self.stopped.wait(RENEW_INTERVAL)

    def yield_to(self, active: str) -> None:
        logger.warning(
            "shards %s are consumed by %s again: this standby stops",
            self.shards,
            active,
            extra={"event": "ledger.standby_yields", "shards": self.shards, "active": active},
        )
        self.stopped.set()
        os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown: the running task finishes

    def release(self) -> None:
        """On a clean stop: the group is handed over at once instead of when the lease runs out."""
        was_running = not self.stopped.is_set()
        self.stopped.set()
        if not was_running:
            return  # yielded: the lease is someone else's
        try:
            release(self.shards, self.owner)
        except BROKER_ERRORS as exc:
            logger.warning("could not release the lease of shards %s: %s", self.shards, exc)
