"""A shard worker settles every waiting seller of its shards each time it connects to the broker
(at start-up, after a crash or a SIGKILL, after a broker outage), and watches its shards every
second for sellers nobody will wake.

What a dead process can leave behind: a shard task that had taken its sellers from Redis and died
before settling them; a countdown task reserved by the dead worker (unacknowledged, so invisible
until the broker's visibility timeout); wake-ups lost with a Redis restarted empty; charges its
last settle reserved whose send (`ledger.fulfil`, published after that commit) never left. The
intents and the reserved charges are all in PostgreSQL, so the worker that takes over the shard
asks PostgreSQL, not Redis, whom to settle and what to send (`ledger.settle_shard` with
`recover`). Provider answers recorded while the worker was down are waiting intents like queued
charges: the same recovery applies them.

A consumer bootstep rather than the `worker_ready` signal: Celery restarts the consumer's steps
when it reconnects after losing the broker, and that is exactly when Redis may have come back
empty.

The watch (`ShardWatch`, a thread of each shard worker), for what happens while the worker lives:
- a web process killed between claiming a shard's wake-up and publishing it leaves the shard's
  flag set for `WAKE_FLAG_TTL` seconds and the sellers that committed meanwhile in the shard's set;
  once the flag has expired the watch claims and publishes their task (workers/dispatch.py);
- a web process killed after its commit and before its claim leaves a seller that Redis never
  heard of (and a client's replay of the key answers the original without waking anyone): a
  seller of the watched shards whose first waiting intent is older than `STUCK_AFTER` and the same
  as a second ago is woken through the coalesced path, so a seller that is settling (its first
  waiting id moves) is never woken twice, and a busy shard gets at most one pending task.
The sweeper (beat) still covers everything, but only after LEDGER_SWEEP_AFTER.

The bootstep also starts the thread that holds the group's lease (workers/leases.py), which tells
a standby on another host that the group has a live consumer."""

import logging
import os
import threading
import time

from celery import bootsteps
from django.db import DatabaseError, close_old_connections

from ledger.selectors import Waiting, sellers_waiting
from workers import dispatch, leases
from workers.routing import SHARD_QUEUE_PREFIX, shard_for

logger = logging.getLogger(__name__)


def consumed_shards(queue_names) -> list[int]:
    return sorted(
        int(name.removeprefix(SHARD_QUEUE_PREFIX)) for name in queue_names if name.startswith(SHARD_QUEUE_PREFIX)
    )


class ShardWatch(threading.Thread):
    INTERVAL = 1.0
    STUCK_AFTER = 2.0

    def __init__(self, shards: list[int]):
        super().__init__(name="ledger-shard-watch", daemon=True)
        self.shards = shards
        self.previous: dict[int, Waiting] = {}

    def run(self) -> None:
        while True:
            for shard in self.shards:
                try:
                    if dispatch.wake_orphaned_shard(shard):
                        logger.info("published the orphaned wake-up of shard %s", shard)
                except dispatch.BROKER_ERRORS as exc:  # the broker is away: the consumer reconnects
                    logger.debug("shard watch, shard %s: %s", shard, exc)
            try:
                self.wake_stuck_sellers()
            except (DatabaseError, *dispatch.BROKER_ERRORS) as exc:
                logger.debug("shard watch: %s", exc)
            time.sleep(self.INTERVAL)

    def wake_stuck_sellers(self) -> None:
        close_old_connections()  # this thread's own connection: drop it if a failover broke it
        waiting = {s: w for s, w in sellers_waiting().items() if shard_for(s) in self.shards}
        stuck = [
            seller_id
            for seller_id, now in waiting.items()
            if now.age > self.STUCK_AFTER and self.previous.get(seller_id, Waiting(0, ())).first == now.first
        ]
        self.previous = waiting
        for seller_id in stuck:
            dispatch.wake_seller_coalesced(seller_id)
        if stuck:
            logger.warning(
                "woke %s sellers waiting without progress",
                len(stuck),
                extra={"event": "ledger.stuck_woken", "seller_ids": stuck[:100]},
            )


class RecoverShardsOnConnect(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}
    watch: ShardWatch | None = None
    lease: leases.LeaseKeeper | None = None

    def start(self, consumer) -> None:
        shards = consumed_shards(consumer.app.amqp.queues.consume_from)
        if shards and RecoverShardsOnConnect.watch is None:
            standby = os.environ.get(leases.STANDBY_ENV) == "1"
            RecoverShardsOnConnect.lease = leases.LeaseKeeper(shards, consumer.hostname, standby=standby)
            RecoverShardsOnConnect.lease.start()
            RecoverShardsOnConnect.watch = ShardWatch(shards)
            RecoverShardsOnConnect.watch.start()
        # What this process reserves from now on, it sends itself: the recovery sends again only
        # what was reserved before (by a process that died, or by this one before the broker left).
        connected_at = time.time()
        for shard in shards:
            try:
                dispatch.recover_shard(shard, connected_at=connected_at)
            except dispatch.BROKER_ERRORS as exc:  # lost again already: the next connect retries
                logger.warning("could not ask for the recovery of shard %s: %s", shard, exc)

    def shutdown(self, consumer) -> None:
        if RecoverShardsOnConnect.lease is not None:
            RecoverShardsOnConnect.lease.release()


def install(app) -> None:
    app.steps["consumer"].add(RecoverShardsOnConnect)
