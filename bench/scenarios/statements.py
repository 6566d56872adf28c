"""Scenario `statements` (docs/performance.md, *Statements*): a seller with `statement_entries`
entries last month (`seed.long_history`: a valid hash chain, the audit passing over it). The
balance at random instants through the HTTP stack, each answer checked against the history; the
month's statement built by the import worker (the real task, from the request to `ready`), its
totals checked; the seller's verifier (`ledger_verify.py`) run over its CSV."""

from __future__ import annotations

import bisect
import http.client
import json
import random
import subprocess
import sys
import time
from datetime import timedelta

from django.utils import timezone

from bench import seed
from bench.scenarios import Context, ScenarioFailed
from bench.scenarios.http_load import percentiles
from bench.stack import ROOT_DIR, reset_ledger

WARMUP = 20  # balance requests not timed: each gunicorn worker loads its views on its first


def run(ctx: Context) -> dict:
    from ledger.audit import audit_ledger
    from ledger.statements.monthly import last_month

    reset_ledger()
    [seller_id], (start, end) = seed.make_sellers(1, prefix="statements"), last_month(timezone.now())
    began = time.monotonic()
    history = seed.long_history(seller_id, entries=ctx.sizes.statement_entries, start=start, end=end)
    result: dict = {"entries": ctx.sizes.statement_entries, "seed_seconds": round(time.monotonic() - began, 1)}
    began = time.monotonic()
    if breaches := audit_ledger(seller_id=seller_id, limit=20):
        raise ScenarioFailed(f"statements: the audit of the seeded history: {breaches[:5]}", partial=result)
    result["audit_seconds"] = round(time.monotonic() - began, 1)
    ctx.stack.start_web()
    try:
        result["balance_at"] = _balance_at(ctx, seller_id, history, start - timedelta(days=1), end)
        csv_path = ctx.stack.log_dir / "statement.csv"
        result["build_seconds"] = _build(ctx, seller_id, history, start, end, csv_path)
        result["verify_seconds"] = _verify(ctx, csv_path)
    except ScenarioFailed as exc:
        raise ScenarioFailed(str(exc), partial=result) from exc
    finally:
        ctx.stack.web.stop()
    return result | {"audit": "ok"}


def _expected(history: dict, at) -> tuple[int, int, int]:
    """(seq, balance, held) at `at`, from how `long_history` wrote the history."""
    times, batch, amount, charges = history["times"], history["batch"], history["amount"], len(history["charge_ids"])
    b = bisect.bisect_right(times, at) - 1  # the last settle at or before `at` (0: the deposit's)
    if b < 0:
        return 0, 0, 0
    reserved = min(b * batch, charges)
    holds = reserved - (b - 1) * batch if 0 < b < len(times) - 1 else 0  # the last settle posts only
    return reserved + 1, history["fund"] - reserved * amount, holds * amount


def _balance_at(ctx: Context, seller_id: int, history: dict, earliest, latest) -> dict:
    """`GET /api/v1/balance/?at=` one after another, at instants drawn at random from a day before
    the first entry to the period's end: their latency, every answer the history's."""
    rng, span, latencies = random.Random(24), int((latest - earliest).total_seconds() * 1e6), []
    headers = {"Authorization": f"Bearer {seed.tokens([seller_id])[0]}"}
    conn = http.client.HTTPConnection("127.0.0.1", ctx.stack.port, timeout=30)
    for n in range(ctx.sizes.balance_requests + WARMUP):
        at = earliest + timedelta(microseconds=rng.randrange(span))
        started = time.perf_counter()
        conn.request("GET", f"/api/v1/balance/?at={at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}", headers=headers)
        response = conn.getresponse()
        body = response.read()
        latencies += [time.perf_counter() - started] * (n >= WARMUP)
        answer = json.loads(body) if response.status == 200 else {}
        if (answer.get("seq"), answer.get("balance"), answer.get("held")) != _expected(history, at):
            raise ScenarioFailed(
                f"balance at {at}: {response.status} {body[:300]!r}, expected {_expected(history, at)}"
            )
    return {"requests": len(latencies), "latency_ms": percentiles(latencies)}


def _build(ctx: Context, seller_id: int, history: dict, start, end, csv_path) -> float:
    """Seconds from the statement's request to `ready`, its totals checked, its CSV at `csv_path`."""
    from ledger.statements.build import statement_pieces, statement_request
    from ledger.statements.models import Statement

    began = time.time()
    statement, _ = statement_request(seller_id=seller_id, period_start=start, period_end=end)
    waiting = Statement.objects.filter(pk=statement.pk).exclude(status=Statement.Status.READY).exists
    seconds = round(seed.wait_until_settled(waiting, timeout=ctx.sizes.settle_timeout, interval=0.2) - began, 1)
    statement.refresh_from_db()
    with csv_path.open("wb") as out:
        out.writelines(statement_pieces(statement=statement, fmt="csv"))
    with csv_path.open(encoding="utf-8") as lines:
        rows = [line.rstrip("\n").split(",") for line in lines if line.startswith("total,")]
    totals = {cells[4]: {"count": int(cells[19]), "amount": int(cells[5])} for cells in rows}
    found = (statement.entries, statement.opening_balance, statement.closing_balance, totals)
    charges = len(history["charge_ids"])
    expected = (charges + 1, 0, history["fund"] - charges * history["amount"], history["totals"])
    if found != expected:
        raise ScenarioFailed(f"statement: entries, opening, closing, totals {found}, expected {expected}")
    return seconds


def _verify(ctx: Context, csv_path) -> float:
    """Seconds the seller's verifier takes to pass the CSV, with the public keys the API serves."""
    keys = csv_path.with_name("keys.json")
    conn = http.client.HTTPConnection("127.0.0.1", ctx.stack.port, timeout=30)
    conn.request("GET", "/api/v1/statements/public-key/")
    keys.write_bytes(conn.getresponse().read())
    began = time.monotonic()
    argv = [sys.executable, str(ROOT_DIR / "ledger_verify.py"), str(csv_path), "--public-key", str(keys)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise ScenarioFailed(
            f"the verifier failed the statement ({done.returncode}): {done.stdout[-500:]}{done.stderr[-500:]}"
        )
    return round(time.monotonic() - began, 1)
