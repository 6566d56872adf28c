"""A shard worker settles every waiting seller of its shards each time it connects to the broker:
at start-up, after a crash or a SIGKILL, and after a broker outage.

What a dead process can leave behind: a shard task that had taken its sellers from Redis and died
before settling them; a countdown task reserved by the dead worker (unacknowledged, so invisible
until the broker's visibility timeout); wake-ups lost with a Redis restarted empty. The intents
are all in PostgreSQL, so the worker that takes over the shard asks PostgreSQL, not Redis, whom to
settle (`ledger.settle_shard` with `recover`). The sweeper would find them too, but only once
they are `LEDGER_SWEEP_AFTER` old.

A consumer bootstep rather than the `worker_ready` signal: Celery restarts the consumer's steps
when it reconnects after losing the broker, and that is exactly when Redis may have come back
empty."""

import logging

from celery import bootsteps

from workers import dispatch
from workers.routing import SHARD_QUEUE_PREFIX

logger = logging.getLogger(__name__)


def consumed_shards(queue_names) -> list[int]:
    return sorted(int(name.removeprefix(SHARD_QUEUE_PREFIX)) for name in queue_names if name.startswith(SHARD_QUEUE_PREFIX))


class RecoverShardsOnConnect(bootsteps.StartStopStep):
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, consumer) -> None:
        for shard in consumed_shards(consumer.app.amqp.queues.consume_from):
            try:
                dispatch.recover_shard(shard)
            except dispatch.BROKER_ERRORS as exc:  # lost again already: the next connect retries
                logger.warning("could not ask for the recovery of shard %s: %s", shard, exc)


def install(app) -> None:
    app.steps["consumer"].add(RecoverShardsOnConnect)
