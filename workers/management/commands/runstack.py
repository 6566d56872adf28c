import os
import secrets
import sys

from django.core.management.base import BaseCommand
from honcho.manager import Manager

from workers.stack import stack_processes


class Command(BaseCommand):
    help = "Run the whole stack in the foreground (web, shard workers, beat, Flower); Ctrl-C stops all."

    def handle(self, *args, **options):
        port = int(os.environ.get("PORT", "8000"))
        flower_port = int(os.environ.get("FLOWER_PORT", "5555"))
        env = dict(os.environ)
        if not env.get("FLOWER_BASIC_AUTH"):
            password = secrets.token_urlsafe(12)
            env["FLOWER_BASIC_AUTH"] = f"admin:{password}"
            self.stdout.write(f"Flower: http://127.0.0.1:{flower_port}/ user admin, password {password}")
        self.stdout.write(f"API: http://127.0.0.1:{port}/api/v1/  admin site: http://127.0.0.1:{port}/admin/")
        manager = Manager()
        for spec in stack_processes(port=port, flower_port=flower_port):
            manager.add_process(spec.name, spec.command, env=env)
        manager.loop()
        sys.exit(manager.returncode)
