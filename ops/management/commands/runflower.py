import os
import secrets
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ops.flower import flower_credentials_problem


class Command(BaseCommand):
    help = (
        "Start Flower, always behind basic auth from FLOWER_BASIC_AUTH=user:password. In development "
        "(DEBUG) a missing password is generated and printed; otherwise Flower refuses to start. Flower "
        "reads its other FLOWER_* variables itself (FLOWER_PERSISTENT, FLOWER_DB, FLOWER_URL_PREFIX, ...)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("FLOWER_PORT", "5555")))
        parser.add_argument("--address", default=os.environ.get("FLOWER_ADDRESS", "127.0.0.1"))
        parser.add_argument("flower_args", nargs="*", help="further Flower options, after --")

    def handle(self, *args, port, address, flower_args, **options):
        env = dict(os.environ)
        problem = flower_credentials_problem(env.get("FLOWER_BASIC_AUTH"))
        if problem and settings.DEBUG and not env.get("FLOWER_BASIC_AUTH"):
            password = secrets.token_urlsafe(16)
            env["FLOWER_BASIC_AUTH"] = f"admin:{password}"
            self.stdout.write(f"Flower: generated credentials for this run: user admin, password {password}")
            self.stdout.flush()
        elif problem and not settings.DEBUG:
            raise CommandError(f"{problem}; Flower never runs without authentication in production")
        elif problem:
            self.stderr.write(f"warning: {problem} (accepted only because DEBUG is on)")
        argv = [
            sys.executable,
            "-m",
            "ops.flower",  # Flower with /metrics behind its authentication too
            "-A",
            "celery_app",
            "flower",
            f"--port={port}",
            f"--address={address}",
            *flower_args,
        ]
        os.chdir(settings.BASE_DIR)
        os.execve(sys.executable, argv, env)
