import base64
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from honcho.manager import Manager
from honcho.printer import Message

from core.static_files import needs_collecting
from devstack.front_proxy import FrontProxy, front_proxy, nginx_binary
from devstack.sandbox import SANDBOX_CLIENT, SANDBOX_ROOTS, SandboxProcess, sandbox_argv
from devstack.stack import ROOT, stack_processes
from ops.flower import flower_credentials_problem
from workers.assignment import worker_groups


class Command(BaseCommand):
    help = (
        "Run the whole stack in the foreground: web (gunicorn), the shard workers, beat and Flower, "
        "with prefixed logs. Creates the database if missing and migrates first. Ctrl-C stops every "
        "process; if any process exits, the others are stopped too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-migrate", action="store_true", help="skip creating and migrating the database")
        parser.add_argument(
            "--host",
            default=os.environ.get("HOST", "127.0.0.1"),
            help="address web and Flower listen on (default HOST or 127.0.0.1)",
        )

    def handle(self, *args, no_migrate: bool, host: str, **options):
        port = int(os.environ.get("PORT", "8000"))
        flower_port = int(os.environ.get("FLOWER_PORT", "5555"))
        try:
            groups = worker_groups()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc

        env = dict(os.environ)
        auth = env.get("FLOWER_BASIC_AUTH")
        problem = flower_credentials_problem(auth)
        if problem and not auth and settings.DEBUG:
            password = secrets.token_urlsafe(16)
            env["FLOWER_BASIC_AUTH"] = f"admin:{password}"
            flower_login = f"user admin, password {password} (generated; set FLOWER_BASIC_AUTH to choose)"
        elif problem and not settings.DEBUG:
            raise CommandError(f"{problem}; Flower never runs without authentication outside development")
        else:
            flower_login = f"user {env['FLOWER_BASIC_AUTH'].split(':', 1)[0]} (FLOWER_BASIC_AUTH)"

        if not no_migrate:
            self._prepare_database()
        self._collect_static()
        sandbox = self._provider(env, shown_host="127.0.0.1" if host in ("0.0.0.0", "::") else host, port=port)
        self._sync_catalog(env, sandbox)

        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.stdout.write(f"API:    http://{shown}:{port}/api/v1/   admin site: http://{shown}:{port}/admin/")
        self.stdout.write(f"Flower: http://{shown}:{flower_port}/   {flower_login}")
        self.stdout.write(
            "Shards: "
            + "; ".join(f"shards{i} -> {','.join(map(str, g))}" for i, g in enumerate(groups))
            + f" (LEDGER_SHARDS={settings.LEDGER_SHARDS})"
        )
        self.stdout.flush()

        with tempfile.TemporaryDirectory(prefix="ledger-nginx-") as run_dir:
            proxy, web_port, stream_port = self._front_proxy(env, host=host, port=port, run_dir=Path(run_dir))
            manager = Manager()
            for spec in stack_processes(
                port=port,
                flower_port=flower_port,
                host=host,
                proxy_argv=proxy.argv if proxy else None,
                web_port=web_port,
                stream_port=stream_port,
            ):
                manager.add_process(spec.name, spec.command, env=env, cwd=str(ROOT))
            if sandbox:
                manager.add_process("provider", shlex.join(sandbox_argv(**sandbox)), env=env, cwd=str(ROOT))
            threading.Thread(
                target=_announce_ready, args=(manager, f"http://{shown}:{port}/api/v1/ready/"), daemon=True
            ).start()
            manager.loop()
        sys.exit(manager.returncode)

    def _provider(self, env: dict, *, shown_host: str, port: int) -> dict | None:
        """The sandbox provider (provider_sandbox/, docs/provider.md) on PROVIDER_PORT, unless
        PROVIDER_URL names a provider: the embedded default, as real providers ship sandboxes. Its
        record survives restarts in .provider-sandbox.sqlite3 (or SANDBOX_DB), as a real provider
        account outlives our databases; it signs callbacks to our API. With PROVIDER_KIND=dvs or
        reloadly the ledger talks to the sandbox's DT One or Reloadly dialect, with its credentials."""
        if env.get("PROVIDER_URL"):
            self.stdout.write(f"Provider: {env['PROVIDER_URL']} (PROVIDER_URL)")
            return None
        provider_port = int(env.get("PROVIDER_PORT") or 8090)
        sandbox = f"http://127.0.0.1:{provider_port}"
        kind = env.get("PROVIDER_KIND") or "sandbox"
        env["PROVIDER_URL"] = sandbox + SANDBOX_ROOTS.get(kind, "")
        if kind in ("dvs", "reloadly"):
            env.setdefault("PROVIDER_API_KEY", SANDBOX_CLIENT[0])
            env.setdefault("PROVIDER_API_SECRET", SANDBOX_CLIENT[1])
            env.setdefault("PROVIDER_AUTH_URL", f"{sandbox}/reloadly/oauth/token")
        env.setdefault("PROVIDER_CALLBACK_URL", f"http://{shown_host}:{port}/api/v1/provider/callbacks/")
        env.setdefault("PROVIDER_CALLBACK_SECRET", "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
        self.stdout.write(f"Provider: sandbox on {env['PROVIDER_URL']} (set PROVIDER_URL to use a real one)")
        self.stdout.flush()
        return {
            "port": provider_port,
            "db": env.get("SANDBOX_DB") or str(ROOT / ".provider-sandbox.sqlite3"),
            "callback_secret": env["PROVIDER_CALLBACK_SECRET"],
        }

    def _sync_catalog(self, env: dict, sandbox: dict | None) -> None:
        """The provider's catalog into ours before anything serves, so that the first charge finds
        its product (beat's `catalog.sync` keeps it current afterwards). The embedded sandbox is
        started for it alone, and again with the stack."""
        with tempfile.TemporaryDirectory(prefix="ledger-sandbox-") as logs:
            provider = SandboxProcess(Path(logs), env=env, **sandbox).start() if sandbox else None
            try:
                synced = subprocess.run(
                    [sys.executable, str(ROOT / "manage.py"), "sync_catalog", "--quiet-progress"],
                    env=env,
                    capture_output=True,
                    text=True,
                )
            finally:
                if provider:
                    provider.stop()
        if synced.returncode:
            self.stdout.write(f"Catalog: not synced ({synced.stderr.strip()[-300:]}); beat's catalog.sync retries")
        else:
            self.stdout.write("Catalog: " + synced.stdout.splitlines()[0] if synced.stdout else "Catalog: synced")
        self.stdout.flush()

    def _front_proxy(
        self, env: dict, *, host: str, port: int, run_dir: Path
    ) -> tuple[FrontProxy | None, int | None, int | None]:
        """nginx in front of gunicorn where nginx is installed (devstack/front_proxy.py)."""
        nginx = nginx_binary()
        if nginx is None:
            self.stdout.write(
                "Front:  none: gunicorn faces clients itself (slow clients can hold all its threads); "
                "install nginx (apt-get install nginx-light) to put it in front"
            )
            self.stdout.flush()
            return None, None, None
        web_port, stream_port = _free_local_port(), _free_local_port()
        # The login limits count the address nginx saw, not nginx's own (core/throttling.py).
        env["NUM_PROXIES"] = env.get("NUM_PROXIES") or "1"
        proxy = front_proxy(
            nginx=nginx,
            listen=f"{host}:{port}",
            upstream=f"127.0.0.1:{web_port}",
            stream_upstream=f"127.0.0.1:{stream_port}",
            run_dir=run_dir,
        )
        self.stdout.write(
            f"Front:  nginx on {host}:{port}, gunicorn behind it on 127.0.0.1:{web_port}, "
            f"the event stream on 127.0.0.1:{stream_port}"
        )
        self.stdout.flush()
        return proxy, web_port, stream_port

    def _collect_static(self) -> None:
        """Under the production settings the web serves static files from the manifest
        collectstatic writes (core/static_files.py): collect them into STATIC_ROOT, which this
        checkout owns, before anything serves. The development settings serve them unhashed."""
        if needs_collecting():
            self.stdout.write(f"Static: collecting into {settings.STATIC_ROOT} (production settings)")
            self.stdout.flush()
            call_command("collectstatic", interactive=False, verbosity=0)

    def _prepare_database(self) -> None:
        """What `make up` does before starting, so that `manage.py runstack` works on its own."""
        env = dict(os.environ, DATABASE_URL=settings.DATABASE_URL, REDIS_URL=settings.CELERY_BROKER_URL)
        check = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_services.py"), "--create-db"], env=env)
        if check.returncode:
            raise CommandError("PostgreSQL or Redis is not reachable (see above)")
        call_command("migrate", interactive=False, verbosity=1)


def _announce_ready(manager: Manager, url: str, timeout: float = 180.0) -> None:
    """Poll the contract's readiness endpoint and say once, in the log, when the stack answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    _say(manager, f"ready: {url} answers 200\n")
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                _say(manager, f"not ready yet: {exc.read().decode(errors='replace')[:200]}\n")
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    _say(manager, f"warning: {url} did not answer 200 within {timeout:.0f}s\n")


def _say(manager: Manager, text: str) -> None:
    manager.events.put(Message(type="line", data=text, time=datetime.now(), name="system", colour=None))


def _free_local_port() -> int:
    """A free port of 127.0.0.1 for a process behind nginx."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
