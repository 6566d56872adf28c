"""The web's own cost per charge POST, in one process: Django's WSGI handler (with the project's
middleware and URLconf, as gunicorn serves it) called in a loop with one valid request, against
the benchmark's real PostgreSQL and Redis, under the production settings. No server, no load
generator: gunicorn's HTTP parsing, PostgreSQL and Redis are outside the number (the HTTP scenario
of `python -m bench` measures all of them together).

    .venv/bin/python -m bench.web_cpu [--view charge|plain|drf] [--requests 5000] [--repeat 3]
    .venv/bin/python -m bench.web_cpu --instructions [--view charge|plain|drf] [--requests 500]
    .venv/bin/python -m bench.web_cpu --breakdown [--requests 2000]

The default prints CPU microseconds per request, which move with the machine's other load.
`--instructions` counts instructions with valgrind's callgrind instead, the same count whatever
else runs: two child processes under callgrind serve `--warmup` and `--warmup + --requests`
requests with everything else identical (database and seller prepared beforehand by this
process), and the difference in their totals is divided by `--requests`, so start-up, imports and
warm-up cancel out. Takes minutes: callgrind runs the interpreter many times slower.

`--breakdown` profiles the charge POST with cProfile in this process and prints each layer's
share of a request's time (`LAYERS`): each function's inclusive time, so a layer is whatever its
entry function calls. cProfile's own cost per call weighs on Python-heavy layers more than on
those that wait in C (libpq, hiredis, json), so read the shares as approximate.

`--view plain` and `--view drf` POST the same body to the trivial views of
`bench/reference_views.py` through the same handler and middleware, for scale.

Uses the database of `BENCH_DATABASE_URL` with `_web_cpu` appended (created and migrated if
needed) and the Redis database of `BENCH_REDIS_URL`; its wake-ups go under a key prefix of their
own, deleted at the end, and so are its charges."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
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

from bench.stack import configure_environment, default_database_url, default_redis_url

BODY = json.dumps({"phone_number": "+989121234567", "amount": 1_000}).encode()
VIEWS = {
    # view: (path, URLconf or None for the project's own, the answer expected)
    "charge": ("/api/v1/charges/", None, "202 Accepted"),
    "plain": ("/plain/", "bench.reference_views", "200 OK"),
    "drf": ("/drf/", "bench.reference_views", "200 OK"),
}
SELLER_VARIABLE = "BENCH_WEB_CPU_SELLER"


def _environ(path: str, token: str) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(BODY)),
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_USER_AGENT": "bench.web_cpu",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(BODY),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


@contextlib.contextmanager
def _quiet():
    """The application's log lines are still formatted and written, to /dev/null: as in
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


def _serve(application, path: str, token: str, requests: int, statuses: dict) -> float:
    """Seconds of CPU this process spent serving `requests` POSTs; answers counted in `statuses`."""

    def start_response(status, headers, exc_info=None):
        statuses[status] = statuses.get(status, 0) + 1

    started = time.process_time()
    for _ in range(requests):
        response = application(_environ(path, token), start_response)
        b"".join(response)
        response.close()
    return time.process_time() - started


def _prepare(args) -> int:
    """The database migrated and a seller of its own: its id."""
    import django

    from devstack.postgres import create_database

    create_database(args.database_url)
    django.setup()
    from bench import seed
    from bench.stack import migrate

    migrate()
    [seller_id] = seed.make_sellers(1, prefix=f"web-cpu-{os.getpid()}-{time.time_ns()}")
    return seller_id


def _token() -> str:
    """An access token for the prepared seller, valid for a day: a callgrind run outlasts the
    configured lifetime."""
    from rest_framework_simplejwt.tokens import AccessToken

    from core.models import Seller

    token = AccessToken.for_user(Seller.objects.get(pk=os.environ[SELLER_VARIABLE]).user)
    token.set_exp(lifetime=dt.timedelta(days=1))
    return str(token)


def _clean_up(args, seller_id: int) -> None:
    from bench.stack import clear_broker
    from ledger.models import Charge

    Charge.objects.filter(seller_id=seller_id).delete()
    clear_broker(args.redis_url, os.environ["BENCH_REDIS_KEY_PREFIX"])


def _child(args) -> int:
    """Serve `--requests` POSTs with the token the parent prepared: what callgrind counts."""
    import django

    django.setup()
    from django.core.wsgi import get_wsgi_application
    from django.test.utils import override_settings

    path, urlconf, expected = VIEWS[args.view]
    application = get_wsgi_application()
    statuses: dict = {}
    with override_settings(ROOT_URLCONF=urlconf) if urlconf else contextlib.nullcontext(), _quiet():
        _serve(application, path, _token(), args.requests, statuses)
    print(json.dumps(statuses))
    return 0 if set(statuses) <= {expected} else 1


def _callgrind_total(args, requests: int) -> int:
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", f"--log-file={log.name}"]
            + [sys.executable, "-m", "bench.web_cpu", "--child", "--view", args.view, "--requests", str(requests)],
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in both children
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(
                f"the measured child failed ({done.returncode}): {done.stdout[-500:]}{done.stderr[-2000:]}"
            )
        return int(re.search(r"Collected : (\d+)", log.read()).group(1))


def _instructions(args) -> dict:
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian's package)")
    warm = _callgrind_total(args, args.warmup)
    measured = _callgrind_total(args, args.warmup + args.requests)
    return {
        "view": args.view,
        "requests": args.requests,
        "instructions_per_request": round((measured - warm) / args.requests),
    }


def _cpu(args) -> dict:
    from django.core.wsgi import get_wsgi_application
    from django.test.utils import override_settings

    path, urlconf, expected = VIEWS[args.view]
    application = get_wsgi_application()
    token = _token()
    statuses: dict = {}
    samples = []
    with override_settings(ROOT_URLCONF=urlconf) if urlconf else contextlib.nullcontext(), _quiet():
        _serve(application, path, token, args.warmup, {})  # connections, prepared statements, caches
        for _ in range(args.repeat):
            samples.append(_serve(application, path, token, args.requests, statuses) / args.requests * 1e6)
    if set(statuses) != {expected}:
        raise SystemExit(f"expected only {expected}, got {statuses}")
    return {
        "view": args.view,
        "requests": args.requests,
        "cpu_us_per_request": [round(s, 1) for s in samples],
        "median_us": round(statistics.median(samples), 1),
    }


# layer: (file suffix, function) whose inclusive time it is. "DRF around the view" and "handler
# and middleware" are what the enclosing call spends outside the layers it contains.
LAYERS = {
    "request": ("django/core/handlers/wsgi.py", "__call__"),
    "view dispatch": ("rest_framework/views.py", "dispatch"),
    "authentication": ("rest_framework/request.py", "_authenticate"),
    "permissions": ("rest_framework/views.py", "check_permissions"),
    "throttle (Redis)": ("rest_framework/views.py", "check_throttles"),
    "parsing": ("rest_framework/request.py", "_load_data_and_files"),
    "validation": ("rest_framework/serializers.py", "is_valid"),
    "phone parsing": ("core/charge_rules.py", "normalize_phone"),
    "charge_submit": ("ledger/services/charges.py", "charge_submit"),
    "the insert": ("core/db/prepared.py", "execute"),
    "wake-up (Redis)": ("ledger/events.py", "intents_recorded"),
    "log line": ("logging/__init__.py", "info"),
    "answer": ("ledger/api/serializers.py", "charge_representation"),
    "rendering": ("rest_framework/response.py", "rendered_content"),
}


def _breakdown(args) -> dict:
    import cProfile
    import pstats

    from django.core.wsgi import get_wsgi_application

    path, _urlconf, expected = VIEWS["charge"]
    application = get_wsgi_application()
    token = _token()
    statuses: dict = {}
    with _quiet():
        _serve(application, path, token, args.warmup, {})
        profile = cProfile.Profile(time.process_time)  # CPU time: the waits on PostgreSQL and Redis are not the web's
        profile.runcall(_serve, application, path, token, args.requests, statuses)
    if set(statuses) != {expected}:
        raise SystemExit(f"expected only {expected}, got {statuses}")
    inclusive = {layer: 0.0 for layer in LAYERS}
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in pstats.Stats(profile).stats.items():
        for layer, (suffix, name) in LAYERS.items():
            if function == name and filename.endswith(suffix):
                inclusive[layer] += cumulative
    share = {layer: seconds / inclusive["request"] for layer, seconds in inclusive.items()}
    inside_dispatch = (
        "authentication",
        "permissions",
        "throttle (Redis)",
        "parsing",
        "validation",
        "charge_submit",
        "answer",
    )
    inside_submit = ("the insert", "wake-up (Redis)", "log line")
    layers = {
        "handler and middleware": share["request"] - share["view dispatch"] - share["rendering"],
        "DRF around the view": share["view dispatch"] - sum(share[layer] for layer in inside_dispatch),
        **{layer: share[layer] for layer in inside_dispatch[:4]},
        "validation (without phone parsing)": share["validation"] - share["phone parsing"],
        "phone parsing": share["phone parsing"],
        "charge_submit's own (fingerprint, charge object)": share["charge_submit"]
        - sum(share[layer] for layer in inside_submit),
        **{layer: share[layer] for layer in inside_submit},
        "answer and rendering": share["answer"] + share["rendering"],
    }
    return {
        "view": "charge",
        "requests": args.requests,
        "profiled_cpu_us_per_request": round(inclusive["request"] / args.requests * 1e6, 1),
        "share": {layer: round(value, 3) for layer, value in layers.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--view", choices=sorted(VIEWS), default="charge")
    parser.add_argument("--requests", type=int, default=None, help="measured requests (default 5000, 500 counted)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100, help="requests served before measuring")
    # Its own database beside the benchmark's: `python -m bench` empties its tables between scenarios.
    parser.add_argument("--database-url", default=default_database_url() + "_web_cpu")
    parser.add_argument("--redis-url", default=default_redis_url())
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    parser.add_argument("--breakdown", action="store_true", help="each layer's share of the charge POST (cProfile)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    if args.requests is None:
        args.requests = 500 if args.instructions else 2000 if args.breakdown else 5000

    configure_environment(
        database_url=args.database_url,
        redis_url=args.redis_url,
        key_prefix=f"bench-web-cpu-{os.getpid()}:",
        worker_processes=1,
        web_workers=1,
    )
    seller_id = _prepare(args)
    os.environ[SELLER_VARIABLE] = str(seller_id)
    try:
        if args.breakdown:
            result = _breakdown(args)
        else:
            result = _instructions(args) if args.instructions else _cpu(args)
    finally:
        _clean_up(args, seller_id)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
