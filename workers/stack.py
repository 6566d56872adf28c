"""The processes of one local stack: web, the shard workers, beat and Flower.

Shard k is consumed by worker process k % LEDGER_WORKER_PROCESSES, so every shard has exactly one
consumer; process 0 also takes the default queue (sweeper, audit, imports)."""

import os
import shlex
import sys
from dataclasses import dataclass

from django.conf import settings

from workers.routing import DEFAULT_QUEUE, SHARD_QUEUE_PREFIX


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


def shard_assignment(shards: int, processes: int) -> list[list[int]]:
    processes = max(1, min(processes, shards))
    return [[k for k in range(shards) if k % processes == p] for p in range(processes)]


def worker_argv(shards: list[int], *, name: str, with_default_queue: bool, python: str = sys.executable) -> list[str]:
    queues = [f"{SHARD_QUEUE_PREFIX}{k}" for k in shards] + ([DEFAULT_QUEUE] if with_default_queue else [])
    return [
        python, "-m", "celery", "-A", "celery_app", "worker",
        "-Q", ",".join(queues), "--pool", "solo", "--prefetch-multiplier", "1",
        "-n", f"{name}@%h", "-E", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]


def stack_processes(*, port: int, flower_port: int, python: str = sys.executable) -> list[ProcessSpec]:
    web_workers = int(os.environ.get("WEB_WORKERS", "4"))
    processes = int(os.environ.get("LEDGER_WORKER_PROCESSES", "2"))
    specs = [
        ProcessSpec("web", [
            python, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", str(web_workers), "--access-logfile", "-", "--graceful-timeout", "5",
        ]),
    ]
    for index, shards in enumerate(shard_assignment(settings.LEDGER_SHARDS, processes)):
        specs.append(ProcessSpec(
            f"shards{index}", worker_argv(shards, name=f"shards{index}", with_default_queue=index == 0, python=python)
        ))
    specs.append(ProcessSpec("beat", [
        python, "-m", "celery", "-A", "celery_app", "beat", "--loglevel", "INFO",
        "--schedule", os.path.join(os.environ.get("BEAT_SCHEDULE_DIR", "/tmp"), f"ledger-beat-{port}"),
    ]))
    specs.append(ProcessSpec("flower", [
        python, "-m", "celery", "-A", "celery_app", "flower", f"--port={flower_port}", "--address=127.0.0.1",
    ]))
    return specs
