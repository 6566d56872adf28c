"""The scenarios, each a function `(ctx) -> dict` (`bench.run.RUNNERS`: `settlement.hot_seller`,
`settlement.many_sellers`, and `run` of `http`, `batch_import`, `fulfilment`). A scenario raises `ScenarioFailed` when
the ledger is wrong afterwards (audit breach, a charge not settled exactly once): a fast wrong
answer is a failure, not a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ScenarioFailed(Exception):
    """`partial`: what was measured before the failure, still reported."""

    def __init__(self, message: str, *, partial: dict | None = None):
        super().__init__(message)
        self.partial = partial or {}


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
    # Waits that include the provider (the fulfilment worker sends ~1,000 charges/s at 50 ms).
    fulfil_timeout: float = 1800.0
    # The fulfilment scenario: the sandbox alone, an import delivered end to end, single charges.
    sandbox_seconds: float = 10.0
    fulfil_rows: int = 100_000
    single_seconds: float = 15.0

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(
            hot_charges=1_000,
            many_sellers=10,
            many_per_seller=20,
            http_clients=(4,),
            http_seconds=1.0,
            http_sellers=4,
            import_rows=300,
            import_large_rows=600,
            limit_single_txns=200,
            settle_timeout=60.0,
            fulfil_timeout=60.0,
            sandbox_seconds=0.5,
            fulfil_rows=200,
            single_seconds=0.5,
        )


@dataclass
class Context:
    smoke: bool
    sizes: Sizes
    stack: object
    limits: object | None
    out_dir: Path
    profile: bool = False
    notes: list[str] = field(default_factory=list)
    load_generator: str = "python"  # of the closed loops: "wrk" (bench/wrk.py) or "python"
    provider_latency_ms: float = 50.0  # the sandbox provider's wait before each answer


def check_audit(*, what: str) -> None:
    from ledger.audit import audit_ledger

    breaches = audit_ledger(limit=20)
    if breaches:
        raise ScenarioFailed(
            f"{what}: ledger audit found {len(breaches)}+ breaches: " + "; ".join(map(str, breaches[:5]))
        )
