import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from workers.commands import import_worker_argv


class Command(BaseCommand):
    help = (
        "Run the charge list import worker (queue ledger.imports) with the same celery command the local "
        "stack uses. Any number of them may run, on any hosts: the stored files are in PostgreSQL."
    )

    def add_arguments(self, parser):
        parser.add_argument("--print", action="store_true", help="print the command instead of running it")

    def handle(self, *args, print: bool, **options):
        argv = import_worker_argv()
        if print:
            self.stdout.write(" ".join(argv))
            return
        os.chdir(settings.BASE_DIR)
        os.execv(sys.executable, argv)
