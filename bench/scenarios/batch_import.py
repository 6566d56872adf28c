"""Scenario `batch_import` (docs/performance.md): charge lists through HTTP and the import worker.
The first file from its upload's first byte to its batch `completed`; then a big one: its upload's
answer time, gunicorn's and the import worker's peak memory, the wait until completed."""

from __future__ import annotations

import random
import secrets
import tempfile
import time
from pathlib import Path

import requests
from django.conf import settings
from django.db import connection

from bench import seed as seeding
from bench.profiling import profiled
from bench.scenarios import Context, ScenarioFailed, check_settled, cpu_per_charge, stages
from bench.stack import Usage, reset_ledger, task_runs

AMOUNT = 1_000
INVALID_EVERY = 1000  # one invalid row per thousand, so the rejected-row path is measured too
POLL = 0.05  # seconds between looks at the batch's status


def generate(path: Path, rows: int, *, seed: int, invalid_every: int = INVALID_EVERY) -> int:
    """A charge list of `rows` rows (phones in four forms, one invalid row every `invalid_every`,
    none when 0); returns the valid rows."""
    rng = random.Random(seed)
    persian = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
    valid = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("phone_number,amount,reference\r\n")
        for n in range(rows):
            if invalid_every and n % invalid_every == invalid_every - 1:
                out.write(f"not-a-phone,{AMOUNT},row {n}\r\n")
                continue
            number = rng.randrange(10**7)
            if 9900 <= number % 10**4 <= 9909:
                number -= 100  # the sandbox's magic endings decline, drop or hang (docs/provider.md)
            phone = (
                f"0912{number:07d}",
                f"+98912{number:07d}",
                f"0912 {number // 10**4:03d} {number % 10**4:04d}",
                f"0912{number:07d}".translate(persian),
            )[n % 4]
            out.write(f"{phone},{AMOUNT},inv-{n}\r\n")
            valid += 1
    return valid


def _prepared_file(tmp: Path, rows: int, *, seed: int, invalid_every: int = INVALID_EVERY) -> tuple:
    """A generated file of `rows`, an access token of a new seller funded for it, and what it is."""
    path = tmp / f"charges-{rows}.csv"
    valid = generate(path, rows, seed=seed, invalid_every=invalid_every)
    [seller_id] = seeding.make_sellers(1, prefix=f"import-{secrets.token_hex(3)}")
    seeding.fund([seller_id], valid * AMOUNT)
    about = {"rows": rows, "valid_rows": valid, "file_mb": round(path.stat().st_size / 2**20, 1)}
    return path, seeding.tokens([seller_id])[0], about


def _upload_or_fail(ctx: Context, token: str, path: Path, rows: int) -> tuple[int, float]:
    """The file POSTed (its body built beforehand): the batch's id, and when the upload began."""
    url = f"http://127.0.0.1:{ctx.stack.port}/api/v1/charge-batches/"
    files = {"file": (path.name, path.read_bytes(), "text/csv")}
    upload = requests.Request("POST", url, headers={"Authorization": f"Bearer {token}"}, files=files).prepare()
    started = time.monotonic()
    try:
        answer = requests.Session().send(upload, timeout=900)
        status, body = answer.status_code, answer.text
    except requests.RequestException as exc:
        status, body = None, f"{type(exc).__name__}: {exc}"
    if status != 202:
        timeout = "WORKER TIMEOUT" in ctx.stack.web.log_tail(200_000)
        raise ScenarioFailed(
            f"the {rows:,}-row upload answered {status} after {time.monotonic() - started:.1f} s"
            f"{' (gunicorn killed the worker at its --timeout)' if timeout else ''}: {body[:300]}"
        )
    return answer.json()["id"], started


def _wait_status(batch_id: int, final: set[str], timeout: float) -> float:
    """Until the batch reaches one of `final` (`rejected` fails); returns when it was seen."""
    from ledger.models import ChargeBatch

    deadline = time.monotonic() + timeout
    while (status := ChargeBatch.objects.values_list("status", flat=True).get(pk=batch_id)) not in final:
        if status == ChargeBatch.Status.REJECTED or time.monotonic() > deadline:
            raise ScenarioFailed(f"batch import: batch {batch_id} {status} (waited {timeout} s at most)")
        time.sleep(POLL)
    return time.monotonic()


def import_file(
    ctx: Context, tmp: Path, rows: int, *, seed: int, invalid_every: int = INVALID_EVERY, profile: str = ""
) -> dict:
    """A generated file uploaded and followed to `completed`, every valid row a succeeded charge:
    seconds to the upload's answer, to `queued`, to `completed`; charges/s from the first reservation
    to the last answer; each process's CPU; each hop's time; with `profile`, a py-spy profile."""
    stack = ctx.stack
    path, token, result = _prepared_file(tmp, rows, seed=seed, invalid_every=invalid_every)
    pids = {"fulfil": stack.fulfil.popen.pid, "provider": stack.provider.process.popen.pid, **stack.worker_pids()}
    cpu = Usage(pids | {"imports": stack.imports.popen.pid, "web": stack.web_pid()}, children=True, database=True)
    fulfil_tasks = len(task_runs(stack.fulfil, "ledger.fulfil"))
    batch_id, started = _upload_or_fail(ctx, token, path, rows)
    valid = result["valid_rows"]
    result["accepted_seconds"] = round(time.monotonic() - started, 2)
    queued = _wait_status(batch_id, {"queued", "completed"}, ctx.sizes.fulfil_timeout)
    with profiled(ctx, profile, pids["fulfil"], into=result):
        done = _wait_status(batch_id, {"completed"}, ctx.sizes.fulfil_timeout)
    used = cpu.stop()
    path.unlink()
    _check(batch_id, valid)
    with connection.cursor() as cur:
        cur.execute("SELECT max(settled_at) - min(reserved_at) FROM ledger_charge WHERE batch_id = %s", [batch_id])
        seconds = cur.fetchone()[0].total_seconds()
    # `fulfil_tasks`: the reconciler's resends of charges still waiting show up as more than
    # PROVIDER_BATCH a task. `cpu_share`: CPU seconds per wall second from the upload to `completed`.
    return result | {
        "queued_seconds": round(queued - started, 2), "settled_seconds": round(done - started, 2),
        "settled_rows_per_s": round(valid / (done - started)), "seconds": round(seconds, 2),
        "charges_per_s": round(valid / seconds), "fulfil_tasks": len(task_runs(stack.fulfil, "ledger.fulfil")) - fulfil_tasks,
        "cpu_share": {name: round(value / (done - started), 2) for name, value in used.items()},
        "cpu_us_per_charge": cpu_per_charge(used, valid),
        "stages_ms": stages("batch_id = %s", [batch_id]),
    }  # fmt: skip


def run(ctx: Context) -> dict:
    rows, batch = ctx.sizes.import_rows, settings.LEDGER_SETTLE_BATCH_SIZE
    limits = []
    if ctx.limits:
        name = f"{batch} debits per transaction, one row (import)"
        limits.append(ctx.limits.debits(name=name, debits_per_txn=batch, sellers=1, transactions=max(2, rows // batch)))
    reset_ledger()
    ctx.stack.start_web()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
            result = import_file(ctx, Path(tmp), rows, seed=4) | {"limits": limits}
            if limits:
                result["ratio_to_limit"] = round(result["settled_rows_per_s"] / limits[0]["rows_per_s"], 3)
            result["large"] = large = {}
            try:
                _large(ctx, Path(tmp), large)
            except ScenarioFailed as exc:
                raise ScenarioFailed(str(exc), partial=result) from exc
    finally:
        ctx.stack.web.stop()
    result["audit"] = "ok"
    return result


def _large(ctx: Context, tmp: Path, out: dict) -> None:
    """The big file, filling `out` as it goes (a failure keeps what was measured)."""
    rows = ctx.sizes.import_large_rows
    path, token, about = _prepared_file(tmp, rows, seed=5)
    out.update(about)
    with Usage({"imports": ctx.stack.imports.popen.pid}, interval=0.02) as worker_memory:
        with Usage({"web": ctx.stack.web_pid()}, children=True, interval=0.02) as web_memory:
            try:
                batch_id, started = _upload_or_fail(ctx, token, path, rows)
            finally:
                out["web_peak_rss_mb"] = max(web_memory.peaks_mb().values(), default=None)
        out["accepted_seconds"] = round(time.monotonic() - started, 2)
        out["web_cpu_seconds"] = web_memory.cpu_seconds()
        queued = _wait_status(batch_id, {"queued", "completed"}, ctx.sizes.settle_timeout * 4)
    out["queued_seconds"] = round(queued - started, 2)
    out["import_worker_peak_rss_mb"] = worker_memory.peaks_mb()["imports"]
    out["import_worker_cpu_us_per_row"] = round(worker_memory.cpu_seconds() / rows * 1e6, 1)
    settled = _wait_status(batch_id, {"completed"}, ctx.sizes.fulfil_timeout)
    out["settled_seconds"] = round(settled - started, 2)
    _check(batch_id, about["valid_rows"])


def _check(batch_id: int, valid: int) -> None:
    """Every valid row a succeeded charge, the batch's counts agreeing; then the audit."""
    from ledger.models import ChargeBatch

    batch = ChargeBatch.objects.get(pk=batch_id)
    if not batch.succeeded == batch.valid_rows == valid:
        raise ScenarioFailed(f"batch import: {batch.succeeded} of {batch.valid_rows} rows succeeded, by the batch")
    check_settled("batch import", "batch_id = %s", [batch_id], charges=valid)
