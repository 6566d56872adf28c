"""The per-seller hash chain of ledger entries: `hash = SHA-256(previous hash || canonical bytes)`.

The canonical bytes of an entry are the UTF-8 encoding of nine fields joined by `|`:

    v1|<seller>|<seq>|<kind>|<amount>|<balance_after>|<charge or empty>|<deposit or empty>|<created_at>

integers in decimal (a `-` for negatives, no leading zeros), `created_at` as the whole number of
microseconds since 1970-01-01T00:00:00Z. The first entry of a seller chains from 32 zero bytes.
`balance_before` is left out: it is the previous entry's `balance_after`, which its own hash covers.

Three copies of this rule exist on purpose, and tests hold them equal: this one (the settle writes
hashes with it), `CANONICAL_SQL` (the audit and the migration's backfill recompute them in
PostgreSQL) and the seller's verifier (`ledger_verify.py`, which imports nothing of ours)."""

import hashlib
from datetime import UTC, datetime, timedelta

GENESIS = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# The same bytes from a row of ledger_entry aliased `e` (PostgreSQL 14+: `extract` is exact).
CANONICAL_SQL = """convert_to('v1|' || {e}.seller_id || '|' || {e}.seq || '|' || {e}.kind || '|' || {e}.amount
    || '|' || {e}.balance_after || '|' || coalesce({e}.charge_id::text, '') || '|'
    || coalesce({e}.deposit_id::text, '') || '|' || (extract(epoch FROM {e}.created_at) * 1000000)::bigint, 'UTF8')"""


def epoch_microseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def canonical_bytes(
    *,
    seller_id: int,
    seq: int,
    kind: str,
    amount: int,
    balance_after: int,
    charge_id: int | None,
    deposit_id: int | None,
    created_at: datetime,
) -> bytes:
    fields = (
        "v1",
        seller_id,
        seq,
        kind,
        amount,
        balance_after,
        "" if charge_id is None else charge_id,
        "" if deposit_id is None else deposit_id,
        epoch_microseconds(created_at),
    )
    return "|".join(str(field) for field in fields).encode()


def chain_hash(previous: bytes, canonical: bytes) -> bytes:
    return hashlib.sha256(previous + canonical).digest()


def entry_hashes(previous: bytes, rows: list[tuple], created_at: datetime) -> list[bytes]:
    """The hashes of one seller's new entries, in order, chained from `previous` (the seller's
    last hash). `rows` are the settle's entry tuples (seller, seq, kind, amount, balance_after,
    charge, deposit), all written at `created_at`: the same bytes as `canonical_bytes`, built
    without a call per field because the settle hashes every entry it writes."""
    at = epoch_microseconds(created_at)
    hashes = []
    for seller_id, seq, kind, amount, balance_after, charge_id, deposit_id in rows:
        charge = "" if charge_id is None else charge_id
        deposit = "" if deposit_id is None else deposit_id
        canonical = f"v1|{seller_id}|{seq}|{kind}|{amount}|{balance_after}|{charge}|{deposit}|{at}".encode()
        previous = hashlib.sha256(previous + canonical).digest()
        hashes.append(previous)
    return hashes
