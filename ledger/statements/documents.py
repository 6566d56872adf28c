"""What a statement says, read once from the database and handed to the writers of each format
(`ledger.statements.formats`): the opening and closing heads of the period, every entry between
them in seq order with its charge's details, the totals per kind and the signed checkpoint of the
closing head. Read in bounded pieces, so a month of a million entries never sits in memory."""

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db import connection

from ledger.models import Charge, Deposit
from ledger.statements.balance_at import balance_at
from ledger.statements.chain import GENESIS
from ledger.statements.checkpoints import checkpoint_at
from ledger.statements.models import ChainCheckpoint

PIECE = 5000  # entries read per query
_MICROSECOND = timedelta(microseconds=1)

# What a charge carries beyond its id, where the charge model has it: the fields a later schema adds
# (the product sold, its face value) are read only once they exist.
_CHARGE_FIELDS = ("phone_number", "reference", "amount")
_PRODUCT_FIELDS = {
    "destination_amount": "destination_amount",
    "destination_currency": "destination_currency",
    "product_version": "product_version__product_id",
    "product_name": "product_version__product__name",
}


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


def _charge_columns() -> dict[str, str]:
    present = {f.name for f in Charge._meta.get_fields()}
    columns = {name: name for name in _CHARGE_FIELDS}
    columns.update({key: path for key, path in _PRODUCT_FIELDS.items() if path.split("__")[0] in present})
    return columns


def _charges(ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    columns = _charge_columns()
    rows = Charge.objects.filter(id__in=ids).values("id", *columns.values())
    found = {}
    for row in rows:
        detail = {"id": row["id"], "phone_number": row["phone_number"], "reference": row["reference"]}
        detail["price"] = row["amount"]  # the seller's price: what the charge holds
        product = row.get(columns.get("product_version", "-"))
        detail["product"] = None if product is None else {"id": product, "name": row.get(columns["product_name"])}
        amount = row.get(columns.get("destination_amount", "-"))
        detail["face_value"] = (
            None if amount is None else {"amount": amount, "currency": row.get(columns["destination_currency"])}
        )
        found[row["id"]] = detail
    return found


def _deposits(ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    return {d["id"]: d for d in Deposit.objects.filter(id__in=ids).values("id", "reference")}


def statement_entries(statement: Statement) -> Iterator[dict]:
    """Every entry after the opening head up to the closing one, in seq order, with its charge's
    or deposit's details; adds each to the statement's totals per kind."""
    after = statement.opening.seq
    while after < statement.closing.seq:
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT seq, created_at, kind, amount, balance_before, balance_after, hash, charge_id, deposit_id
                     FROM ledger_entry WHERE seller_id = %s AND seq > %s AND seq <= %s ORDER BY seq LIMIT %s""",
                [statement.seller_id, after, statement.closing.seq, PIECE],
            )
            rows = cursor.fetchall()
        if not rows:
            return  # entries missing at the end: the verifier reports the history cut short
        charges = _charges([r[7] for r in rows if r[7] is not None])
        deposits = _deposits([r[8] for r in rows if r[8] is not None])
        for seq, created_at, kind, amount, before, balance_after, hash_, charge_id, deposit_id in rows:
            total = statement.totals.setdefault(kind, {"count": 0, "amount": 0})
            total["count"] += 1
            total["amount"] += amount
            yield {
                "seq": seq,
                "created_at": time_text(created_at),
                "kind": kind,
                "amount": amount,
                "balance_before": before,
                "balance_after": balance_after,
                "hash": bytes(hash_).hex(),
                "charge": None if charge_id is None else charges.get(charge_id, {"id": charge_id}),
                "deposit": None if deposit_id is None else deposits.get(deposit_id, {"id": deposit_id}),
            }
        after = rows[-1][0]
