"""The web's own CPU per charge POST, measured in one process without a server or a load
generator: the WSGI application called in a loop with one valid request, against the bench's
real PostgreSQL and Redis, under the production settings.

The HTTP benchmark's throughput on 2 shared cores moves by a third from one run to the next with
what the machine's other tenants do; this number barely moves, so it is the one to compare code
changes by (`docs/performance.md` §3). It counts the application's CPU only: gunicorn's HTTP
handling, PostgreSQL and Redis are outside it (bench/http_submit.py measures all of them).

    .venv/bin/python -m bench.web_cpu [--requests 5000] [--repeat 3]
    .venv/bin/python -m bench.web_cpu --instructions [--requests 1000]

CPU time on the shared machine still moves by ±15 % between runs. `--instructions` counts
instructions instead (valgrind's callgrind, the same count whatever else runs): the process runs
twice, with `--requests` more requests the second time, and the difference is divided by them,
so start-up and warm-up cancel out. About 30 times slower than a plain run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench.stack import configure_environment, create_database

_BODY = json.dumps({"phone_number": "+989121234567", "amount": 1_000}).encode()


def _environ(token: str) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/api/v1/charges/",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(_BODY)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_USER_AGENT": "bench.web_cpu",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(_BODY),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


@contextlib.contextmanager
def _quiet():
    """The application's log lines still get formatted and written, to /dev/null: as in
    production, where they go to a pipe, minus what the pipe's reader costs."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _measure(application, token: str, requests: int) -> tuple[float, dict]:
    statuses: dict[str, int] = {}

    def start_response(status, headers, exc_info=None):
        statuses[status] = statuses.get(status, 0) + 1

    started = time.process_time()
    for _ in range(requests):
        response = application(_environ(token), start_response)
        b"".join(response)
        response.close()
    return (time.process_time() - started) / requests * 1e6, statuses


def _instructions(argv: list[str], requests: int) -> float:
    """Instructions per request, by callgrind, of this module run with `argv`."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian's package)")
    totals = []
    for measured in (100, 100 + requests):
        with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
            subprocess.run(
                ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", f"--log-file={log.name}"]
                + [sys.executable, "-m", "bench.web_cpu", *argv]
                + ["--warmup", "100", "--requests", str(measured), "--repeat", "1"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            totals.append(int(re.search(r"Collected : (\d+)", log.read()).group(1)))
    return (totals[1] - totals[0]) / requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500, help="requests before measuring")
    parser.add_argument(
        "--django-handler",
        action="store_true",
        help="call Django's handler directly, without the WSGI-level fast path in front of it",
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger_web_cpu")
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    args = parser.parse_args(argv)
    if args.instructions:
        variant = ["--django-handler"] if args.django_handler else []
        variant += ["--database-url", args.database_url, "--redis-url", args.redis_url]
        per_request = _instructions(variant, args.requests)
        print(json.dumps({"requests": args.requests, "instructions_per_charge": round(per_request)}))
        return 0

    configure_environment(
        database_url=args.database_url, redis_url=args.redis_url, key_prefix="", worker_processes=1, web_workers=1
    )
    create_database(args.database_url)
    import django

    django.setup()
    import redis
    from rest_framework_simplejwt.tokens import AccessToken

    from bench.stack import migrate
    from config.wsgi import application
    from ledger.models import Charge
    from ledger.services.sellers import seller_create

    migrate()
    if args.django_handler:
        application = getattr(application, "django_app", application)
    seller = seller_create(username=f"bench-web-cpu-{os.getpid()}-{time.time_ns()}", password="x" * 16, name="bench")
    token = str(AccessToken.for_user(seller.user))
    samples = []
    try:
        with _quiet():
            _measure(application, token, args.warmup)  # connections, prepared statements, caches
            for _ in range(args.repeat):
                micros, statuses = _measure(application, token, args.requests)
                samples.append(micros)
    finally:
        Charge.objects.filter(seller=seller).delete()
        redis.Redis.from_url(args.redis_url).flushdb()  # the wake-ups nobody consumed
    result = {
        "requests": args.requests,
        "repeat": args.repeat,
        "statuses": statuses,
        "web_cpu_us_per_charge": [round(s, 1) for s in samples],
        "median_us": round(statistics.median(samples), 1),
    }
    print(json.dumps(result))
    return 0 if set(statuses) == {"202 Accepted"} else 1


if __name__ == "__main__":
    sys.exit(main())
