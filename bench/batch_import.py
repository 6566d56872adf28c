"""Benchmark of charge list imports (issue 4), through the real HTTP stack.

Measures, for a 100,000-row file: the time from the start of the upload to the 202 (accepted:
parsed, validated, stored, queued) and to the moment the batch's last charge is settled by the
shard workers; and for a 1,000,000-row file the peak resident memory of the web worker that
imported it. Targets on the 2-core machine: accepted <= 5 s, settled <= 15 s, peak RSS < 300 MB.

Two entry points:
- `run(ctx)`: a scenario of `python -m bench` (uses its stack: gunicorn and the shard workers).
- `main()`: standalone, `python -m bench.batch_import [--rows N] [--memory-rows N]`; brings up its
  own database, gunicorn and shard workers (DATABASE_URL, REDIS_URL, BENCH_BATCH_PORT) and prints
  the results as JSON.

Imports only the standard library, psutil and (after setup) Django, so the module can be loaded
before Django is configured."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.processes import spawn, stop_all

ROOT = Path(__file__).resolve().parent.parent
AMOUNT = 1_000
INVALID_EVERY = 1000  # one invalid row per thousand, so the rejected-row path is measured too
_PHONE_FORMS = ("0912{:07d}", "+98912{:07d}", "0912 {:03d}", "۰۹۱۲{:07d}")


# --- The file and the upload ------------------------------------------------------------------


def generate(path: Path, rows: int, *, seed: int = 4) -> int:
    """Write a charge list of `rows` data rows (phones in mixed national/international/Persian
    forms, a reference per row, a few invalid rows). Returns the number of valid rows."""
    rng = random.Random(seed)
    persian = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
    valid = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone_number,amount,reference\r\n")
        for n in range(rows):
            if n % INVALID_EVERY == INVALID_EVERY - 1:
                out.write(f"not-a-phone,{AMOUNT},row {n}\r\n")
                continue
            number = rng.randrange(10**7)
            form = n % 4
            if form == 2:
                phone = f"0912 {number // 10**4:03d} {number % 10**4:04d}"
            elif form == 3:
                phone = f"0912{number:07d}".translate(persian)
            else:
                phone = _PHONE_FORMS[form].format(number)
            out.write(f"{phone},{AMOUNT},inv-{n}\r\n")
            valid += 1
    return valid


def upload(port: int, token: str, path: Path, *, key: str | None = None, timeout: float = 900) -> tuple[int, dict]:
    """POST the file as multipart/form-data, streamed from disk, and return (status, body)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = path.stat().st_size

    def body():
        yield head
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk
        yield tail

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    if key:
        headers["Idempotency-Key"] = key
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/api/v1/charge-batches/", body=body(), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


class PeakRss:
    """Peak RSS of a process and its children (gunicorn's workers), sampled every 20 ms."""

    def __init__(self, pid: int):
        import psutil

        self._root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(0.02):
            try:
                for proc in [self._root, *self._root.children()]:
                    self.peak = max(self.peak, proc.memory_info().rss)
            except psutil.Error:
                continue

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


# --- Measuring (needs Django set up) ---------------------------------------------------------


def _seller_and_token(funding: int) -> tuple[int, str]:
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.tokens import AccessToken

    from ledger.services.deposits import deposit_approve, deposit_request
    from ledger.services.sellers import seller_create
    from ledger.services.settlement import settle_seller

    name = f"batch-bench-{secrets.token_hex(4)}"
    seller = seller_create(username=name, password=secrets.token_urlsafe(16), name=name)
    admin = get_user_model().objects.create_superuser(username=f"{name}-admin", password=secrets.token_urlsafe(16))
    deposit, _ = deposit_request(seller=seller, amount=funding)
    deposit_approve(deposit_id=deposit.pk, approved_by=admin)
    settle_seller(seller_id=seller.pk)  # credit now, so the measured settlement is the batch's alone
    return seller.pk, str(AccessToken.for_user(seller.user))


def _wait_completed(batch_id: int, timeout: float) -> float:
    """Until the settle of the batch's last charge marks it completed (the import worker queues
    its rows first)."""
    from django.db import close_old_connections

    from ledger.models import ChargeBatch

    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        status = ChargeBatch.objects.values_list("status", flat=True).get(pk=batch_id)
        if status == ChargeBatch.Status.COMPLETED:
            return time.monotonic()
        if status == ChargeBatch.Status.REJECTED or time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} is {status}, not completed, after {timeout}s")
        time.sleep(0.05)


def _check(batch_id: int, valid: int) -> None:
    from ledger.audit import audit_ledger
    from ledger.models import Charge

    succeeded = Charge.objects.filter(batch_id=batch_id, status=Charge.Status.SUCCEEDED).count()
    breaches = audit_ledger(limit=5)
    if succeeded != valid or breaches:
        raise RuntimeError(f"batch {batch_id}: {succeeded}/{valid} succeeded; audit: {[str(b) for b in breaches]}")


def measure(*, port: int, web_pid: int, rows: int, memory_rows: int, settle_timeout: float = 300) -> dict:
    """The two measurements against a running web server and shard workers."""
    result: dict = {"rows": rows, "memory_rows": memory_rows}
    with tempfile.TemporaryDirectory(prefix="batch-bench-") as tmp:
        path = Path(tmp) / f"charges-{rows}.csv"
        valid = generate(path, rows)
        seller_id, token = _seller_and_token(funding=valid * AMOUNT)
        result["file_mb"] = round(path.stat().st_size / 2**20, 1)
        started = time.monotonic()
        status, body = upload(port, token, path)
        accepted = time.monotonic()
        if status != 202:
            raise RuntimeError(f"upload answered {status}: {body}")
        settled = _wait_completed(body["id"], settle_timeout)
        _check(body["id"], valid)
        result.update(
            accepted_seconds=round(accepted - started, 2),
            settled_seconds=round(settled - started, 2),
            valid_rows=body["valid_rows"],
            invalid_rows=body["invalid_rows"],
            accepted_rows_per_s=round(rows / (accepted - started)),
            targets={"accepted_seconds": 5.0, "settled_seconds": 15.0, "peak_rss_mb": 300},
        )
        path.unlink()

        if memory_rows:
            path = Path(tmp) / f"charges-{memory_rows}.csv"
            valid = generate(path, memory_rows, seed=5)
            _, token = _seller_and_token(funding=valid * AMOUNT)
            result["memory_file_mb"] = round(path.stat().st_size / 2**20, 1)
            with PeakRss(web_pid) as rss:
                started = time.monotonic()
                status, body = upload(port, token, path)
                result["memory_accepted_seconds"] = round(time.monotonic() - started, 2)
            if status != 202:
                raise RuntimeError(f"upload of {memory_rows} rows answered {status}: {body}")
            result["web_peak_rss_mb"] = rss.mb
            # Not timed: the workers drain it so the next run starts clean and the audit covers it.
            _wait_completed(body["id"], settle_timeout * 4)
            _check(body["id"], valid)
    result["audit"] = "ok"
    return result


# --- Entry points ----------------------------------------------------------------------------


def run(ctx) -> dict:
    """Scenario for `python -m bench`: its web server and shard workers, its sizes."""
    stack = ctx.stack
    if not stack.web.alive:
        stack.start_web()
    return measure(
        port=stack.port,
        web_pid=stack.web_pid(),
        rows=ctx.sizes.import_rows,
        memory_rows=ctx.sizes.import_memory_rows,
        settle_timeout=ctx.sizes.settle_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_import", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--memory-rows", type=int, default=1_000_000, help="0 skips the memory measurement")
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_BATCH_PORT", "8250")))
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args(argv)

    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger_batch_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")  # plain http on 127.0.0.1
    sys.path.insert(0, str(ROOT))
    _create_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    import celery_app  # noqa: F401  (binds the tasks to the configured app before any publish)
    from workers.stack import import_worker_argv, shard_assignment, worker_argv

    call_command("migrate", "--noinput", verbosity=0)
    logs = Path(tempfile.mkdtemp(prefix="batch-bench-logs-"))
    commands = [
        worker_argv(shards, name=f"batch-bench{i}", with_default_queue=i == 0)
        for i, shards in enumerate(shard_assignment(settings.LEDGER_SHARDS, 2))
    ] + [import_worker_argv(name="batch-bench-imports")]
    web = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"127.0.0.1:{args.port}",
        "--workers",
        str(args.web_workers),
    ]
    processes = [spawn(argv, logs / f"p{i}.log") for i, argv in enumerate([*commands, web])]
    try:
        _wait_http(args.port, processes[-1])
        time.sleep(2)  # shard workers connect to the broker
        result = measure(port=args.port, web_pid=processes[-1].pid, rows=args.rows, memory_rows=args.memory_rows)
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(result, indent=2))
    finally:
        stop_all(processes, timeout=15)
    return 0


# --- Issue 11's targets for imports as Celery jobs ---------------------------------------------


def import_job_targets_main(argv: list[str] | None = None) -> int:
    """`python -m bench.batch_import --import-job-targets [--rows N] [--large-rows N]`: the targets of
    imports run by the import worker, measured once against the production commands (gunicorn with
    its ordinary 30 s timeout, two shard workers, the import worker; DATABASE_URL, REDIS_URL,
    BENCH_BATCH_PORT as for `main`):
    - a `--large-rows` upload (1,000,000) answered in <= 5 s, with web peak RSS <= 150 MB;
    - `--rows` (100,000) settled <= 15 s after the upload began;
    - import worker peak RSS <= 200 MB while it imports the large file.
    Prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.batch_import --import-job-targets")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--large-rows", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_BATCH_PORT", "8250")))
    args = parser.parse_args(argv)
    _configure_standalone()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    import celery_app  # noqa: F401  (binds the tasks to the configured app before any publish)
    from ledger.models import ChargeBatch
    from workers.stack import import_worker_argv, shard_assignment, web_argv, worker_argv

    call_command("migrate", "--noinput", verbosity=0)
    logs = Path(tempfile.mkdtemp(prefix="import-job-bench-logs-"))
    shard_workers = [
        worker_argv(shards, name=f"import-job-bench{i}", with_default_queue=i == 0)
        for i, shards in enumerate(shard_assignment(settings.LEDGER_SHARDS, 2))
    ]
    importer = spawn(import_worker_argv(name="import-job-bench-imports"), logs / "imports.log")
    web = spawn(web_argv(host="127.0.0.1", port=args.port, workers=2), logs / "web.log")
    processes = [spawn(argv, logs / f"shards{i}.log") for i, argv in enumerate(shard_workers)] + [importer, web]
    result: dict = {"rows": args.rows, "large_rows": args.large_rows}
    try:
        _wait_http(args.port, web)
        time.sleep(3)  # workers connect to the broker
        with tempfile.TemporaryDirectory(prefix="import-job-bench-") as tmp:
            path = Path(tmp) / "small.csv"
            valid = generate(path, args.rows)
            _, token = _seller_and_token(funding=valid * AMOUNT)
            started = time.monotonic()
            status, body = upload(args.port, token, path)
            accepted = time.monotonic()
            if status != 202:
                raise RuntimeError(f"upload answered {status}: {body}")
            settled = _wait_completed(body["id"], 300)
            _check(body["id"], valid)
            result.update(accepted_seconds=round(accepted - started, 2), settled_seconds=round(settled - started, 2))

            path = Path(tmp) / "large.csv"
            valid = generate(path, args.large_rows, seed=5)
            _, token = _seller_and_token(funding=valid * AMOUNT)
            result["large_file_mb"] = round(path.stat().st_size / 2**20, 1)
            with PeakRss(importer.pid) as worker_rss:
                with PeakRss(web.pid) as web_rss:
                    started = time.monotonic()
                    status, body = upload(args.port, token, path)
                    accepted = time.monotonic()
                if status != 202:
                    raise RuntimeError(f"upload of {args.large_rows} rows answered {status}: {body}")
                batch = _wait_status(body["id"], ChargeBatch.Status.QUEUED, ChargeBatch.Status.COMPLETED)
                queued = time.monotonic()
            result.update(
                large_accepted_seconds=round(accepted - started, 2),
                large_web_peak_rss_mb=web_rss.mb,
                large_queued_seconds=round(queued - started, 2),
                large_worker_peak_rss_mb=worker_rss.mb,
                large_valid_rows=batch.valid_rows,
            )
            result["large_settled_seconds"] = round(_wait_completed(body["id"], 1200) - started, 2)
            _check(body["id"], valid)
        result["targets"] = {
            "large_accepted_seconds": 5.0,
            "large_web_peak_rss_mb": 150,
            "settled_seconds": 15.0,
            "large_worker_peak_rss_mb": 200,
        }
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        result["audit"] = "ok"
        print(json.dumps(result, indent=2))
    finally:
        stop_all(processes, timeout=15)
    return 0


def _configure_standalone() -> None:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger_batch_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(48))
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "false")  # plain http on 127.0.0.1
    sys.path.insert(0, str(ROOT))
    _create_database(os.environ["DATABASE_URL"])


def _wait_status(batch_id: int, *statuses: str, timeout: float = 600):
    from django.db import close_old_connections

    from ledger.models import ChargeBatch

    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        batch = ChargeBatch.objects.get(pk=batch_id)
        if batch.status in statuses:
            return batch
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} is {batch.status} after {timeout}s")
        time.sleep(0.05)


def _create_database(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg2
    from psycopg2 import sql

    parsed = urlparse(url)
    conn = psycopg2.connect(
        host=parsed.hostname,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        dbname="postgres",
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [parsed.path.lstrip("/")])
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.path.lstrip("/"))))
    conn.close()


def _wait_http(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/health/")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"web not answering on port {port}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--import-job-targets"]:
        sys.exit(import_job_targets_main(sys.argv[2:]))
    sys.exit(main())
