"""The celery command line of every worker process, as `manage.py shardworker` and `importworker`
run them in production and the development stack (devstack/) starts them. Every shard process
also takes the sweeper's queue (so sweeping survives the loss of any one), and process 0 the
default queue (audit). Charge list imports, webhooks and fulfilment have worker processes of their
own."""

from __future__ import annotations

import os
import sys

from workers.routing import DEFAULT_QUEUE, FULFIL_QUEUE, IMPORTS_QUEUE, RECONCILE_QUEUE, SHARD_QUEUE_PREFIX, SWEEP_QUEUE


def worker_argv(shards: list[int], *, name: str, with_default_queue: bool, python: str = sys.executable) -> list[str]:
    queues = (
        [f"{SHARD_QUEUE_PREFIX}{k}" for k in shards] + [SWEEP_QUEUE] + ([DEFAULT_QUEUE] if with_default_queue else [])
    )
    return celery_worker_argv(queues, name=name, python=python)


def import_worker_argv(*, name: str = "imports", python: str = sys.executable) -> list[str]:
    """The import worker: one import at a time, on its own queue, so a long one never delays a shard."""
    return celery_worker_argv([IMPORTS_QUEUE], name=name, python=python)


def celery_worker_argv(
    queues: list[str], *, name: str, python: str = sys.executable, pool: tuple[str, ...] = ("--pool", "solo")
) -> list[str]:
    return [
        python,
        "-m",
        "celery",
        "-A",
        "celery_app",
        "worker",
        "-Q",
        ",".join(queues),
        *pool,
        "--prefetch-multiplier",
        "1",
        "-n",
        f"{name}@%h",
        "-E",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


def webhook_worker_argv(*, name: str = "webhooks", python: str = sys.executable) -> list[str]:
    """The webhook worker: its own queue, threads (deliveries wait on the network, not the CPU),
    so one slow endpoint holds one thread and delays no other endpoint and no settlement."""
    threads = ("--pool", "threads", "--concurrency", os.environ.get("WEBHOOK_WORKER_THREADS", "16"))
    return celery_worker_argv(["ledger.webhooks"], name=name, python=python, pool=threads)


def fulfil_worker_argv(*, name: str = "fulfil", python: str = sys.executable) -> list[str]:
    """The fulfilment worker: its own queue, task threads, each task's requests sent at once
    through the process's one transfers thread, at most PROVIDER_CONCURRENCY in flight
    (providers/transfers.py). A task waits out its provider's answers on its thread: at low rates
    each carries a charge or two, so 16 threads keep a burst of them from queueing behind each
    other (4 capped it near 55 tasks a second at 50 ms); under load PROVIDER_CONCURRENCY, not the
    task threads, bounds what is in flight."""
    threads = ("--pool", "threads", "--concurrency", os.environ.get("FULFIL_WORKER_THREADS", "16"))
    return celery_worker_argv([FULFIL_QUEUE, RECONCILE_QUEUE], name=name, python=python, pool=threads)


def beat_argv(*, schedule: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "celery", "-A", "celery_app", "beat", "--loglevel", "INFO", "--schedule", schedule]
