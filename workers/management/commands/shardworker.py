import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from workers.stack import ROOT, worker_argv, worker_groups


class Command(BaseCommand):
    help = (
        "Run shard worker process INDEX of the configured assignment (LEDGER_WORKER_SHARDS or "
        "LEDGER_WORKER_PROCESSES), with the same celery command the local stack uses. One container or "
        "service per index; together they consume every shard exactly once."
    )

    def add_arguments(self, parser):
        parser.add_argument("index", type=int)
        parser.add_argument("--print", action="store_true", help="print the command instead of running it")

    def handle(self, *args, index, print: bool, **options):
        try:
            groups = worker_groups()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if not 0 <= index < len(groups):
            raise CommandError(f"there are {len(groups)} shard worker processes (0..{len(groups) - 1}), not {index}")
        argv = worker_argv(groups[index], name=f"shards{index}", with_default_queue=index == 0)
        if print:
            self.stdout.write(" ".join(argv))
            return
        os.chdir(ROOT)
        os.execv(sys.executable, argv)
