"""The scenarios, each a function `(ctx) -> dict` (`bench.run.RUNNERS`). A scenario raises
`ScenarioFailed` when the ledger is wrong afterwards (audit breach, a charge not settled exactly
once) or the system did not do its work: a fast wrong answer is a failure, not a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ScenarioFailed(Exception):
    def __init__(self, message: str, *, partial: dict | None = None):
        super().__init__(message)
        self.partial = partial or {}  # what was measured before the failure, still reported


@dataclass
class Sizes:
    hot_charges: int = 100_000
    many_sellers: int = 1_000
    many_per_seller: int = 100
    http_clients: tuple[int, ...] = (32, 128)
    http_seconds: float = 10.0
    http_sellers: int = 32
    import_rows: int = 100_000
    import_large_rows: int = 1_000_000
    # pgbench transactions for the one-debit limit (a few seconds of it on one hot row).
    limit_single_txns: int = 3_000
    settle_timeout: float = 300.0
    # Waits that include the provider (the fulfilment worker sends 400-700 charges/s at 50 ms on
    # the shared 2 cores: the 1,000,000-row import's delivery takes 25-45 minutes).
    fulfil_timeout: float = 3600.0
    # The fulfilment scenario: the sandbox alone, an import delivered end to end, single charges.
    sandbox_seconds: float = 10.0
    fulfil_rows: int = 100_000
    single_seconds: float = 15.0
    catalog_products: int = 10_000
    # The audit: its sellers, the ledger sizes (entries) it is timed at, the new entries before
    # each periodic run, and the sellers of the measured rolling full pass.
    audit_sellers: int = 1_000
    audit_sizes: tuple[int, ...] = (250_000, 1_000_000)
    audit_new: tuple[int, ...] = (10_000, 100_000)
    audit_rolling: int = 100
    close_charges: int = 100_000
    # The statements: one seller's ledger entries, and the balance-at requests timed over them.
    statement_entries: int = 1_000_000
    balance_requests: int = 2_000

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            hot_charges=1_000, many_sellers=10, many_per_seller=20, http_clients=(4,), http_seconds=1.0,
            http_sellers=4, import_rows=300, import_large_rows=600, limit_single_txns=200, settle_timeout=60.0,
            fulfil_timeout=60.0, sandbox_seconds=0.5, fulfil_rows=200, single_seconds=0.5, catalog_products=300,
            audit_sellers=10, audit_sizes=(2_000, 5_000), audit_new=(100, 1_000), audit_rolling=2,
            close_charges=2_000, statement_entries=3_000, balance_requests=50,
        )  # fmt: skip


@dataclass
class Context:
    smoke: bool
    sizes: Sizes
    stack: object
    limits: object | None
    out_dir: Path
    profile: bool = False
    notes: list[str] = field(default_factory=list)
    load_generator: str = "python"  # of the HTTP closed loops: "wrk" or "python"
    provider_latency_ms: float = 50.0  # the sandbox provider's wait before each answer


def check_settled(what: str, where: str, params: list, *, charges: int | None = None) -> None:
    """Every charge `where` says (`charges` of them when known, and at least one) succeeded; then
    the ledger audit, which holds each balance to its entries and every succeeded charge to exactly
    one of them."""
    from django.db import connection

    from ledger.audit import audit_ledger

    with connection.cursor() as cur:
        cur.execute(f"SELECT status, count(*) FROM ledger_charge WHERE {where} GROUP BY status", params)
        statuses = dict(cur.fetchall())
    if not statuses or set(statuses) - {"succeeded"} or charges not in (None, statuses.get("succeeded", 0)):
        raise ScenarioFailed(f"{what}: charges {statuses}, expected {charges or 'all'} succeeded")
    if breaches := audit_ledger(limit=20):
        raise ScenarioFailed(f"{what}: ledger audit found {len(breaches)}+ breaches: {breaches[:5]}")


def cpu_per_charge(used: dict[str, float], charges: int) -> dict[str, int]:
    """CPU µs per charge by process (`Usage.stop()`); `server`: all but the sandbox and `machine`."""
    each = {name: round(seconds / charges * 1e6) for name, seconds in used.items()}
    return each | {"server": sum(us for name, us in each.items() if name not in ("provider", "machine"))}


# Each hop of a charge's lifecycle: where its time to final goes.
STAGES = {
    "created_to_reserved": "reserved_at - created_at",
    "reserved_to_submitted": "submitted_at - reserved_at",
    "submitted_to_answer": "outcome_at - submitted_at",
    "answer_to_settled": "settled_at - outcome_at",
}


def stages(where: str, params: list) -> dict:
    """p50/p95/p99 (ms) of each of the `STAGES` of the charges `where` says."""
    from django.db import connection

    columns = ", ".join(
        f"percentile_cont(array[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM {span}))"
        for span in STAGES.values()
    )
    with connection.cursor() as cur:
        cur.execute(f"SELECT {columns} FROM ledger_charge WHERE {where}", params)
        row = cur.fetchone()
    return {
        name: dict(zip(("p50", "p95", "p99"), (round(v * 1000, 1) for v in values), strict=True))
        for name, values in zip(STAGES, row, strict=True)
        if values is not None
    }
