"""The web's own cost per charge POST, in one process: Django's WSGI handler (the project's
middleware and URLconf, as gunicorn serves it) called in a loop with one valid request against
real PostgreSQL and Redis, under the production settings; no server and no load generator
(docs/performance.md, *The charge POST*).

    .venv/bin/python -m bench.web_cpu [--view charge|plain|drf] [--requests 5000] [--repeat 3]
    .venv/bin/python -m bench.web_cpu --instructions [--view charge|plain|drf] [--requests 500]
    .venv/bin/python -m bench.web_cpu --breakdown [--requests 2000]

CPU µs per request; `--instructions`: counted by callgrind in two children serving `--warmup` and
`--warmup + --requests` requests (start-up cancels out); `--breakdown`: each layer's share (`LAYERS`)
by cProfile; `--view plain|drf`: the trivial views of `bench/reference_views.py`. On the database of
`BENCH_DATABASE_URL` + `_web_cpu` and `BENCH_REDIS_URL` under a prefix of its own, cleaned after."""

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
from wsgiref.util import setup_testing_defaults

from bench.stack import DATABASE_URL, REDIS_URL

BODY = json.dumps({"phone_number": "+989121234567", "amount": 1_000}).encode()
VIEWS = {
    # view: (path, URLconf or None for the project's own, the answer expected)
    "charge": ("/api/v1/charges/", None, "202 Accepted"),
    "plain": ("/plain/", "bench.reference_views", "200 OK"),
    "drf": ("/drf/", "bench.reference_views", "200 OK"),
}
SELLER_VARIABLE = "BENCH_WEB_CPU_SELLER"


@contextlib.contextmanager
def _quiet():
    """Log lines still formatted and written, to /dev/null (production's pipe, without its reader)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        for fd in (1, 2):
            os.dup2(devnull.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)


@contextlib.contextmanager
def _serving(view: str):
    """A function serving N POSTs to `view` through Django's WSGI handler with the prepared seller's
    token, answering the CPU seconds spent; raises unless every answer was the expected one."""
    from django.core.wsgi import get_wsgi_application
    from django.test.utils import override_settings
    from rest_framework_simplejwt.tokens import AccessToken

    from core.models import Seller

    path, urlconf, expected = VIEWS[view]
    application = get_wsgi_application()
    token = AccessToken.for_user(Seller.objects.get(pk=os.environ[SELLER_VARIABLE]).user)
    token.set_exp(lifetime=dt.timedelta(days=1))  # a callgrind run outlasts the configured lifetime
    statuses: dict = {}

    def start_response(status, headers, exc_info=None):
        statuses[status] = statuses.get(status, 0) + 1

    request = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "CONTENT_TYPE": "application/json"}
    request |= {"CONTENT_LENGTH": str(len(BODY)), "HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": "127.0.0.1"}
    request |= {"HTTP_HOST": "127.0.0.1:8000", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1"}
    setup_testing_defaults(request)  # the rest of a WSGI environ (wsgi.*, SERVER_NAME, SCRIPT_NAME)

    def serve(requests: int) -> float:
        started = time.process_time()
        for _ in range(requests):
            response = application({**request, "wsgi.input": io.BytesIO(BODY)}, start_response)
            b"".join(response)
            response.close()
        return time.process_time() - started

    with override_settings(ROOT_URLCONF=urlconf) if urlconf else contextlib.nullcontext(), _quiet():
        yield serve
    if set(statuses) != {expected}:
        raise SystemExit(f"expected only {expected}, got {statuses}")


def _prepare(args) -> int:
    """The database migrated and emptied, the catalog in it, and a seller of its own: its id."""
    from bench.stack import open_database

    open_database(args.database_url, args.redis_url, key_prefix=f"bench-web-cpu-{os.getpid()}:")
    from bench import seed
    from bench.stack import reset_ledger

    reset_ledger()
    return seed.make_sellers(1, prefix="web-cpu")[0]


def _child(args) -> int:
    """Serve `--requests` POSTs with the seller the parent prepared: what callgrind counts."""
    import django

    django.setup()
    with _serving(args.view) as serve:
        serve(args.requests)
    return 0


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
    return {"instructions_per_request": round((measured - warm) / args.requests)}


def _cpu(args) -> dict:
    with _serving(args.view) as serve:
        serve(args.warmup)  # connections, prepared statements, caches
        samples = [serve(args.requests) / args.requests * 1e6 for _ in range(args.repeat)]
    return {"cpu_us_per_request": [round(s, 1) for s in samples], "median_us": round(statistics.median(samples), 1)}


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
INSIDE_DISPATCH = (
    "authentication",
    "permissions",
    "throttle (Redis)",
    "parsing",
    "validation",
    "charge_submit",
    "answer",
)
INSIDE_SUBMIT = ("the insert", "wake-up (Redis)", "log line")


def _breakdown(args) -> dict:
    import cProfile
    import pstats

    with _serving("charge") as serve:
        serve(args.warmup)
        profile = cProfile.Profile(time.process_time)  # CPU time: the waits on PostgreSQL and Redis are not the web's
        profile.runcall(serve, args.requests)
    inclusive = dict.fromkeys(LAYERS, 0.0)
    for (filename, _line, function), (_cc, _nc, _tt, cumulative, _callers) in pstats.Stats(profile).stats.items():
        for layer, (suffix, name) in LAYERS.items():
            if function == name and filename.endswith(suffix):
                inclusive[layer] += cumulative
    share = {layer: seconds / inclusive["request"] for layer, seconds in inclusive.items()}
    layers = {
        "handler and middleware": share["request"] - share["view dispatch"] - share["rendering"],
        "DRF around the view": share["view dispatch"] - sum(share[layer] for layer in INSIDE_DISPATCH),
        **{layer: share[layer] for layer in INSIDE_DISPATCH[:4]},
        "validation (without phone parsing)": share["validation"] - share["phone parsing"],
        "phone parsing": share["phone parsing"],
        "charge_submit's own (fingerprint, charge object)": share["charge_submit"] - sum(map(share.get, INSIDE_SUBMIT)),
        **{layer: share[layer] for layer in INSIDE_SUBMIT},
        "answer and rendering": share["answer"] + share["rendering"],
    }
    cpu_us = round(inclusive["request"] / args.requests * 1e6, 1)
    return {"profiled_cpu_us_per_request": cpu_us, "share": {layer: round(v, 3) for layer, v in layers.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--view", choices=sorted(VIEWS), default="charge")
    parser.add_argument("--requests", type=int, default=None, help="measured requests (default 5000, 500 counted)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=100, help="requests served before measuring")
    # Its own database beside the benchmark's: `python -m bench` empties its tables between scenarios.
    parser.add_argument("--database-url", default=DATABASE_URL + "_web_cpu")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    parser.add_argument("--breakdown", action="store_true", help="each layer's share of the charge POST (cProfile)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)
    if args.requests is None:
        args.requests = 500 if args.instructions else 2000 if args.breakdown else 5000
    os.environ[SELLER_VARIABLE] = str(seller_id := _prepare(args))
    try:
        measure = _breakdown if args.breakdown else _instructions if args.instructions else _cpu
        result = {"view": "charge" if args.breakdown else args.view, "requests": args.requests, **measure(args)}
    finally:
        from bench.stack import clear_broker
        from ledger.models import Charge

        Charge.objects.filter(seller_id=seller_id).delete()
        clear_broker(args.redis_url, os.environ["BENCH_REDIS_KEY_PREFIX"])
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
