"""nginx in front of gunicorn for `make up` (`manage.py runstack`), from the same template the
Compose file gives the official nginx image (deploy/nginx/ledger.conf.template).

gunicorn serves each request on one of a few threads for as long as the client takes to send
it, so a dozen clients that send their headers and then trickle the body hold every thread and
the API stops answering. nginx reads every request whole before passing it on, and drops clients
that go quiet. Started when nginx is installed (`apt-get install nginx-light`); without it the
stack runs gunicorn directly, as before, and says so."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "ledger.conf.template"
# Room for the multipart envelope around the largest charge list Django accepts.
MULTIPART_ALLOWANCE = 1024 * 1024

# The main file: what the official image's own nginx.conf provides around the template, with
# every path inside the run directory so that nginx runs as any user, beside other stacks.
_MAIN = """worker_processes 1;
pid {run_dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {run_dir}/client_body;
    proxy_temp_path {run_dir}/proxy;
    fastcgi_temp_path {run_dir}/fastcgi;
    uwsgi_temp_path {run_dir}/uwsgi;
    scgi_temp_path {run_dir}/scgi;
    include {run_dir}/ledger.conf;
}}
"""


def nginx_binary() -> str | None:
    """nginx on PATH (or in /usr/sbin, which a normal user's PATH often lacks), unless
    `LEDGER_FRONT_PROXY=0` asks for gunicorn alone."""
    if os.environ.get("LEDGER_FRONT_PROXY", "1") == "0":
        return None
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render(template: str, values: dict[str, str]) -> str:
    """Fill in `${LEDGER_*}` as envsubst does in the official image; nginx's own `$vars` stay."""

    def value(match: re.Match) -> str:
        return values[match.group(1)]

    return re.sub(r"\$\{(LEDGER_[A-Z_]+)\}", value, template)


@dataclass(frozen=True)
class FrontProxy:
    argv: list[str]
    run_dir: Path


def front_proxy(
    *,
    nginx: str,
    listen: str,
    upstream: str,
    stream_upstream: str,
    run_dir: Path,
    batch_max_bytes: int | None = None,
) -> FrontProxy:
    """Write nginx's configuration into `run_dir` (which must exist) and return its command.
    `batch_max_bytes`: the web's LEDGER_BATCH_MAX_BYTES (default: this process's setting)."""
    batch_max_bytes = settings.LEDGER_BATCH_MAX_BYTES if batch_max_bytes is None else batch_max_bytes
    values = {
        "LEDGER_LISTEN": listen,
        "LEDGER_UPSTREAM": upstream,
        "LEDGER_STREAM_UPSTREAM": stream_upstream,
        "LEDGER_CLIENT_MAX_BODY_SIZE": str(batch_max_bytes + MULTIPART_ALLOWANCE),
        "LEDGER_PROXY_READ_TIMEOUT": os.environ.get("WEB_TIMEOUT", "30"),
    }
    # nginx's workers drop root's privileges (to nobody) and must reach their temporary paths.
    run_dir.chmod(0o755)
    (run_dir / "ledger.conf").write_text(render(TEMPLATE.read_text(), values))
    main = run_dir / "nginx.conf"
    main.write_text(_MAIN.format(run_dir=run_dir))
    argv = [nginx, "-e", "stderr", "-p", str(run_dir), "-c", str(main), "-g", "daemon off;"]
    return FrontProxy(argv=argv, run_dir=run_dir)
