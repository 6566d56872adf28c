"""Every row lock the ledger takes lives here.

Lock order (the only one, so no deadlock is possible): a seller's account row first, then the
intents (deposits, charges) of that same seller. A transaction never locks two accounts. The
HTTP layer takes no account lock at all: approving a deposit is a conditional UPDATE on the
deposit row alone."""

from dataclasses import dataclass

from django.db import connection

from ledger.prepared import PreparedStatement


@dataclass(frozen=True)
class LockedAccount:
    seller_id: int
    balance: int
    last_seq: int


_LOCK_ACCOUNT = PreparedStatement(
    "ledger_lock_account",
    "SELECT balance, last_seq FROM ledger_account WHERE seller_id = $1 FOR NO KEY UPDATE",
    ["bigint"],
)


def account_lock(cursor, *, seller_id: int) -> LockedAccount | None:
    """Lock one seller's account until the end of the current transaction.

    `FOR NO KEY UPDATE`: we change the balance, never the key, so foreign-key checks from rows
    that reference the seller are not blocked."""
    if not connection.in_atomic_block:
        raise RuntimeError("account_lock must be called inside transaction.atomic()")
    _LOCK_ACCOUNT.execute(cursor, [seller_id])
    row = cursor.fetchone()
    return None if row is None else LockedAccount(seller_id, row[0], row[1])
