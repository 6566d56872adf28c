"""Scenario 4: charge list imports through the real HTTP stack and the import worker. A
100,000-row file from the first byte of its upload to its batch `completed` (the import worker
parses, validates and COPYs it, the shard workers reserve it, the fulfilment worker sends it to
the sandbox provider and the shard workers post the answers); then a 1,000,000-row file: its
upload's answer time and gunicorn's peak memory while it takes it, the import worker's peak
memory while it imports it, and the wait until that batch is completed too. Each batch must end
with every valid row succeeded and the audit clean. The parts are reported separately, so a
failure of the big file still leaves the first numbers."""

from __future__ import annotations

import http.client
import json
import random
import secrets
import tempfile
import time
import uuid
from pathlib import Path

from django.conf import settings

from bench import seed
from bench.scenarios import Context, ScenarioFailed, check_audit
from bench.stack import Usage, reset_ledger

AMOUNT = 1_000
INVALID_EVERY = 1000  # one invalid row per thousand, so the rejected-row path is measured too
POLL = 0.05  # seconds between looks at the batch's status


def generate(path: Path, rows: int, *, seed: int, invalid_every: int = INVALID_EVERY) -> int:
    """Write a charge list of `rows` data rows (phones in national, international, spaced and
    Persian-digit forms, a reference per row, one invalid row every `invalid_every`, none when 0).
    Returns the valid rows."""
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


def upload(port: int, token: str, path: Path, *, timeout: float = 900) -> tuple[int | None, dict]:
    """POST the file as multipart/form-data, streamed from disk: (status, body), or (None, error)
    when no usable answer came back."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk
        yield tail

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + path.stat().st_size + len(tail)),
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/api/v1/charge-batches/", body=body(), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    except (OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
        return None, {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        conn.close()


def _funded_seller(prefix: str, funding: int) -> str:
    """A new seller credited with `funding` (settled now, so the measured settlement is the
    batch's alone), and an access token for it."""
    from rest_framework_simplejwt.tokens import AccessToken

    from core.models import Seller

    [seller_id] = seed.make_sellers(1, prefix=f"{prefix}-{secrets.token_hex(3)}")
    seed.fund([seller_id], funding)
    return str(AccessToken.for_user(Seller.objects.get(pk=seller_id).user))


def _wait_status(batch_id: int, final: set[str], timeout: float) -> float:
    """Until the batch reaches one of `final` (`rejected` ends the wait as a failure); returns
    the monotonic time it was seen."""
    from ledger.models import ChargeBatch

    deadline = time.monotonic() + timeout
    while True:
        status = ChargeBatch.objects.values_list("status", flat=True).get(pk=batch_id)
        if status in final:
            return time.monotonic()
        if status == ChargeBatch.Status.REJECTED:
            raise ScenarioFailed(f"batch import: batch {batch_id} was rejected")
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"batch import: batch {batch_id} still {status} after {timeout} s")
        time.sleep(POLL)


def _check(batch_id: int, valid: int) -> None:
    """Every valid row a succeeded charge, the batch's own counts agreeing; then the audit."""
    from ledger.models import Charge, ChargeBatch

    batch = ChargeBatch.objects.get(pk=batch_id)
    succeeded = Charge.objects.filter(batch_id=batch_id, status=Charge.Status.SUCCEEDED).count()
    if not (succeeded == batch.succeeded == batch.valid_rows == valid):
        raise ScenarioFailed(
            f"batch import: {succeeded} of {valid} valid rows succeeded (batch says {batch.succeeded} of "
            f"{batch.valid_rows})"
        )
    check_audit(what="batch import")


def _upload_or_fail(ctx: Context, token: str, path: Path, rows: int, started: float) -> int:
    status, body = upload(ctx.stack.port, token, path)
    if status != 202:
        cause = ""
        if "WORKER TIMEOUT" in ctx.stack.web.log_tail(200_000):
            cause = " (gunicorn killed the worker at its --timeout)"
        raise ScenarioFailed(
            f"the {rows:,}-row upload answered {status} after {time.monotonic() - started:.1f} s{cause}: "
            f"{str(body)[:300]}"
        )
    return body["id"]


def run(ctx: Context) -> dict:
    rows, batch = ctx.sizes.import_rows, settings.LEDGER_SETTLE_BATCH_SIZE
    limits = []
    if ctx.limits is not None:
        limits = [
            ctx.limits.debits(
                name=f"{batch} debits per transaction, one row (import)",
                debits_per_txn=batch,
                sellers=1,
                transactions=max(2, rows // batch),
            )
        ]
    reset_ledger()
    if not ctx.stack.web.alive:
        ctx.stack.start_web()
    result: dict = {"rows": rows, "limits": limits}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
            path = Path(tmp) / f"charges-{rows}.csv"
            valid = generate(path, rows, seed=4)
            token = _funded_seller("import", valid * AMOUNT)
            started = time.monotonic()
            batch_id = _upload_or_fail(ctx, token, path, rows, started)
            accepted = time.monotonic()
            settled = _wait_status(batch_id, {"completed"}, ctx.sizes.fulfil_timeout)
            _check(batch_id, valid)
            result.update(
                file_mb=round(path.stat().st_size / 2**20, 1),
                valid_rows=valid,
                invalid_rows=rows - valid,
                accepted_seconds=round(accepted - started, 2),
                settled_seconds=round(settled - started, 2),
                settled_rows_per_s=round(valid / (settled - started)),
            )
            if limits:
                result["ratio_to_limit"] = round(result["settled_rows_per_s"] / limits[0]["rows_per_s"], 3)
            path.unlink()
            result["large"] = large = {}
            try:
                _large(ctx, Path(tmp), large)
            except ScenarioFailed as exc:
                raise ScenarioFailed(str(exc), partial=result) from exc
    finally:
        ctx.stack.stop_web()
    result["audit"] = "ok"
    return result


def _large(ctx: Context, tmp: Path, out: dict) -> None:
    """The big file: the upload's answer time and gunicorn's peak RSS while it takes it (its
    master and workers), the import worker's peak RSS and CPU until the rows are queued, then the
    wait until the batch is completed. Fills `out` as it goes, so a failure keeps what was
    measured."""
    rows = ctx.sizes.import_large_rows
    path = tmp / f"charges-{rows}.csv"
    valid = generate(path, rows, seed=5)
    token = _funded_seller("import-large", valid * AMOUNT)
    out.update(rows=rows, valid_rows=valid, file_mb=round(path.stat().st_size / 2**20, 1))
    importer = {"imports": ctx.stack.imports.popen.pid}
    web = {"web": ctx.stack.web_pid()}
    with Usage(importer, interval=0.02) as worker_memory:
        with Usage(web, children=True, interval=0.02) as web_memory:
            started = time.monotonic()
            try:
                batch_id = _upload_or_fail(ctx, token, path, rows, started)
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
    _check(batch_id, valid)
