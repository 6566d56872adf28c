"""What a statement says, read once from the database and handed to the writers of each format
(`ledger.statements.formats`): the opening and closing heads of the period, every entry between
them in seq order with its charge's details, the totals per kind and the signed checkpoint of the
closing head. Read in bounded pieces, so a month of a million entries never sits in memory."""

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection

from ledger.statements.balance_at import balance_at
from ledger.statements.chain import GENESIS
from ledger.statements.checkpoints import checkpoint_at
from ledger.statements.models import ChainCheckpoint

PIECE = 5000  # entries read per query
_MICROSECOND = timedelta(microseconds=1)

# A piece of entries with what a statement shows of each one's charge (the product sold, its face
# value, the seller's price: what the hold is) or deposit, in one query.
_PIECE_SQL = """SELECT e.seq, e.created_at, e.kind, e.amount, e.balance_before, e.balance_after, e.hash, e.charge_id,
       c.phone_number, c.reference, c.amount, c.product_id, p.name, c.destination_amount, c.destination_currency,
       e.deposit_id, d.reference
  FROM ledger_entry e
  LEFT JOIN ledger_charge c ON c.id = e.charge_id
  LEFT JOIN catalog_product p ON p.id = c.product_id
  LEFT JOIN ledger_deposit d ON d.id = e.deposit_id
 WHERE e.seller_id = %s AND e.seq > %s AND e.seq <= %s ORDER BY e.seq LIMIT %s"""


def time_text(moment: datetime | None) -> str | None:
    """Every time in a statement: UTC, microseconds always written (the verifier reads them back exactly)."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Head:
    seq: int
    balance: int
    held: int
    hash: bytes

    def as_dict(self) -> dict:
        return {"seq": self.seq, "balance": self.balance, "held": self.held, "hash": self.hash.hex()}


@dataclass
class Statement:
    seller_id: int
    period_start: datetime
    period_end: datetime
    opening: Head
    closing: Head
    checkpoint: ChainCheckpoint
    totals: dict[str, dict[str, int]] = field(default_factory=dict)

    def header(self) -> dict:
        return {
            "format": "ledger-statement-v1",
            "seller": self.seller_id,
            "period": {"start": time_text(self.period_start), "end": time_text(self.period_end)},
        }

    def checkpoint_dict(self) -> dict:
        return checkpoint_dict(self.checkpoint)


def checkpoint_dict(checkpoint: ChainCheckpoint) -> dict:
    return {
        "seller": checkpoint.seller_id,
        "seq": checkpoint.seq,
        "hash": bytes(checkpoint.hash).hex(),
        "balance": checkpoint.balance,
        "entry_created_at": time_text(checkpoint.entry_created_at),
        "signed_at": time_text(checkpoint.signed_at),
        "key_id": checkpoint.key_id,
        "signature": base64.b64encode(bytes(checkpoint.signature)).decode(),
    }


def _head(seller_id: int, before: datetime) -> Head:
    """The chain's head just before `before` (the last entry strictly earlier)."""
    state = balance_at(seller_id=seller_id, at=before - _MICROSECOND)
    hash_ = GENESIS
    if state.seq:
        with connection.cursor() as cursor:
            cursor.execute("SELECT hash FROM ledger_entry WHERE seller_id = %s AND seq = %s", [seller_id, state.seq])
            hash_ = bytes(cursor.fetchone()[0])
    return Head(state.seq, state.balance, state.held, hash_)


def statement_open(*, seller_id: int, period_start: datetime, period_end: datetime) -> Statement:
    """The period's bounds and the signed checkpoint of its closing head; the entries follow from
    `statement_entries`, which also fills the totals."""
    opening = _head(seller_id, period_start)
    closing = _head(seller_id, period_end)
    checkpoint = checkpoint_at(seller_id=seller_id, seq=closing.seq)
    return Statement(seller_id, period_start, period_end, opening, closing, checkpoint)


def statement_entries(statement: Statement) -> Iterator[dict]:
    """Every entry after the opening head up to the closing one, in seq order, with its charge's
    or deposit's details; adds each to the statement's totals per kind."""
    after, totals, at, at_text = statement.opening.seq, statement.totals, None, None
    while after < statement.closing.seq:
        with connection.cursor() as cursor:
            cursor.execute(_PIECE_SQL, [statement.seller_id, after, statement.closing.seq, PIECE])
            rows = cursor.fetchall()
        if not rows:
            return  # entries missing at the end: the verifier reports the history cut short
        for (seq, created_at, kind, amount, before, balance_after, hash_, charge_id, phone, reference, price,
             product_id, product_name, face_amount, face_currency, deposit_id, deposit_reference) in rows:  # fmt: skip
            total = totals.get(kind) or totals.setdefault(kind, {"count": 0, "amount": 0})
            total["count"] += 1
            total["amount"] += amount
            charge = deposit = None
            if charge_id is not None:
                charge = {"id": charge_id, "phone_number": phone, "reference": reference, "price": price}
                charge["product"] = None if product_id is None else {"id": product_id, "name": product_name}
                charge["face_value"] = (
                    None if face_amount is None else {"amount": face_amount, "currency": face_currency}
                )
            if deposit_id is not None:
                deposit = {"id": deposit_id, "reference": deposit_reference}
            if created_at != at:  # a settle's entries share its time
                at, at_text = created_at, time_text(created_at)
            yield {
                "seq": seq,
                "created_at": at_text,
                "kind": kind,
                "amount": amount,
                "balance_before": before,
                "balance_after": balance_after,
                "hash": hash_.hex(),
                "charge": charge,
                "deposit": deposit,
            }
        after = rows[-1][0]
