import os
import sys
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from workers import leases
from workers.assignment import worker_groups
from workers.commands import worker_argv
from workers.heartbeat import announce_standby

# How often a standby looks at the lease: a small part of the takeover time.
STANDBY_POLL = 0.2


class Command(BaseCommand):
    help = (
        "Run shard worker process INDEX of the configured assignment (LEDGER_WORKER_SHARDS or "
        "LEDGER_WORKER_PROCESSES), with the same celery command the local stack uses. One container or "
        "service per index; together they consume every shard exactly once. With --standby, wait "
        "(consuming nothing) until the group's active worker has been gone for LEDGER_SHARD_LEASE_SECONDS, "
        "then become that worker; run it under a supervisor that restarts it, on another host."
    )

    def add_arguments(self, parser):
        parser.add_argument("index", type=int)
        parser.add_argument("--print", action="store_true", help="print the command instead of running it")
        parser.add_argument("--standby", action="store_true", help="take the group over when its worker is gone")

    def handle(self, *args, index, print: bool, standby: bool, **options):
        try:
            groups = worker_groups()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if not 0 <= index < len(groups):
            raise CommandError(f"there are {len(groups)} shard worker processes (0..{len(groups) - 1}), not {index}")
        name = f"shards{index}-standby" if standby else f"shards{index}"
        argv = worker_argv(groups[index], name=name, with_default_queue=index == 0)
        if print:
            self.stdout.write(" ".join(argv))
            return
        if standby:
            self.wait_for_takeover(groups[index], name)
            os.environ[leases.STANDBY_ENV] = "1"
        os.chdir(settings.BASE_DIR)
        os.execv(sys.executable, argv)

    def wait_for_takeover(self, shards: list[int], name: str) -> None:
        self.stdout.write(f"standby for shards {shards}: waiting for their worker to go", ending="\n")
        self.stdout.flush()
        # A lease seen and then gone is a worker gone. A lease never seen is a worker still booting
        # (the whole stack starting at once, on a busy host) until three lease periods have passed.
        seen, give_up_waiting = False, time.monotonic() + 3 * settings.LEDGER_SHARD_LEASE_SECONDS
        last_announced = 0.0
        while True:
            try:
                if time.monotonic() - last_announced > 1:
                    announce_standby(name, shards)
                    last_announced = time.monotonic()
                owner = leases.holder(shards)
            except leases.BROKER_ERRORS as exc:  # nobody can renew or take the lease meanwhile
                self.stderr.write(f"standby: broker unavailable ({exc}); waiting")
                time.sleep(1)
                continue
            seen = seen or owner is not None
            if owner is None and (seen or time.monotonic() >= give_up_waiting):
                self.stdout.write(f"standby for shards {shards}: their worker is gone; taking over")
                return
            time.sleep(STANDBY_POLL)
