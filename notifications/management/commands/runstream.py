import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve the live event stream (GET /api/v1/events/stream/, Server-Sent Events) under uvicorn, "
        "the ASGI process of its own that the front proxy routes that path to (docs/notifications.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("STREAM_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("STREAM_PORT", "8001")))

    def handle(self, *args, host, port, **options):
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            host,
            "--port",
            str(port),
            # Django has no lifespan events; access lines would be one per reconnect, not per event.
            "--lifespan",
            "off",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
        ]
        os.chdir(settings.BASE_DIR)
        os.execv(sys.executable, argv)
