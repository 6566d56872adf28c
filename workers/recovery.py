"""A shard worker settles every waiting seller of its shards each time it connects to the broker:
at start-up, after a crash or a SIGKILL, and after a broker outage. And every second it checks
that no seller of its shards waits in Redis for a wake-up nobody will publish.

What a dead process can leave behind: a shard task that had taken its sellers from Redis and died
before settling them; a countdown task reserved by the dead worker (unacknowledged, so invisible
until the broker's visibility timeout); wake-ups lost with a Redis restarted empty. The intents
are all in PostgreSQL, so the worker that takes over the shard asks PostgreSQL, not Redis, whom to
settle (`ledger.settle_shard` with `recover`). The sweeper would find them too, but only once
they are `LEDGER_SWEEP_AFTER` old.

A consumer bootstep rather than the `worker_ready` signal: Celery restarts the consumer's steps
when it reconnects after losing the broker, and that is exactly when Redis may have come back
empty.

The watch (`OrphanWatch`): a web process killed between claiming a shard's wake-up and publishing
it leaves the shard's flag set for `WAKE_FLAG_TTL` seconds and the sellers that committed meanwhile
in the shard's set; if no commit follows, nothing would publish their task until the sweeper.
A thread of the worker claims and publishes it once the flag has expired (workers/dispatch.py)."""

import logging
import threading
import time

from celery import bootsteps

from workers import dispatch
from workers.routing import SHARD_QUEUE_PREFIX

logger = logging.getLogger(__name__)


def consumed_shards(queue_names) -> list[int]:
    return sorted(int(name.removeprefix(SHARD_QUEUE_PREFIX)) for name in queue_names if name.startswith(SHARD_QUEUE_PREFIX))


class OrphanWatch(threading.Thread):
    INTERVAL = 1.0

    def __init__(self, shards: list[int]):
        super().__init__(name="ledger-orphan-watch", daemon=True)
        self.shards = shards

    def run(self) -> None:
        while True:
            for shard in self.shards:
                try:
                    if dispatch.wake_orphaned_shard(shard):
                        logger.info("published the orphaned wake-up of shard %s", shard)
                except dispatch.BROKER_ERRORS as exc:  # the broker is away: the consumer reconnects
                    logger.debug("orphan watch of shard %s: %s", shard, exc)
            time.sleep(self.INTERVAL)


class RecoverShardsOnConnect(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}
    watch: OrphanWatch | None = None

    def start(self, consumer) -> None:
        shards = consumed_shards(consumer.app.amqp.queues.consume_from)
        if shards and RecoverShardsOnConnect.watch is None:
            RecoverShardsOnConnect.watch = OrphanWatch(shards)
            RecoverShardsOnConnect.watch.start()
        for shard in shards:
            try:
                dispatch.recover_shard(shard)
            except dispatch.BROKER_ERRORS as exc:  # lost again already: the next connect retries
                logger.warning("could not ask for the recovery of shard %s: %s", shard, exc)


def install(app) -> None:
    app.steps["consumer"].add(RecoverShardsOnConnect)
