import socket

import redis
from django.core.management.base import BaseCommand, CommandError

from workers.heartbeat import STALE_AFTER, live_workers


class Command(BaseCommand):
    help = (
        "Exit 0 if the shard worker NAME (default: shards<INDEX>@<this host>) announced itself in Redis "
        f"within the last {STALE_AFTER:.0f}s, else 1. The container health check of shard workers; unlike "
        "`celery inspect ping` it also answers while the worker is busy with a task."
    )

    def add_arguments(self, parser):
        parser.add_argument("index", type=int, nargs="?", default=0)
        parser.add_argument("--name", help="full worker name, e.g. shards0@host")
        parser.add_argument("--standby", action="store_true", help="the standby of group INDEX, waiting or active")

    def handle(self, *args, index: int, name: str | None, standby: bool, **options):
        name = name or f"shards{index}{'-standby' if standby else ''}@{socket.gethostname()}"
        try:
            workers = live_workers()
        except redis.RedisError as exc:
            raise CommandError(f"Redis did not answer: {exc}") from exc
        if name not in workers:
            raise CommandError(f"worker {name} has not announced itself in the last {STALE_AFTER:.0f}s")
        self.stdout.write(f"{name} consumes {', '.join(workers[name]) or 'nothing (a standby, waiting)'}")
