"""Every row lock the ledger takes lives here.

Lock order (the only one, so no deadlock is possible): account rows first, several of them only
in ascending seller id, then the intents (deposits, charges) of those same sellers. The HTTP
layer takes no account lock at all: approving a deposit is a conditional UPDATE on the deposit
row alone."""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from core.db.prepared import PreparedStatement, array_literal


@dataclass(frozen=True)
class LockedAccount:
    seller_id: int
    balance: int
    last_seq: int
    held: int
    last_hash: bytes  # the hash of the seller's last entry (ledger/statements/chain.py)
    updated_at: datetime  # the time of the seller's last settle that changed it


_LOCK_ACCOUNT = PreparedStatement(
    "ledger_lock_account",
    """SELECT balance, last_seq, held, last_hash, updated_at FROM ledger_account WHERE seller_id = $1
    FOR NO KEY UPDATE""",
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
    return None if row is None else LockedAccount(seller_id, *row[:3], bytes(row[3]), row[4])


_LOCK_ACCOUNTS = PreparedStatement(
    "ledger_lock_accounts",
    """SELECT seller_id, balance, last_seq, held, last_hash, updated_at FROM ledger_account WHERE seller_id = ANY($1)
    ORDER BY seller_id FOR NO KEY UPDATE""",
    ["bigint[]"],
)


def accounts_lock(cursor, *, seller_ids: list[int]) -> dict[int, LockedAccount]:
    """Lock several sellers' accounts, in ascending seller id (rows are locked as the sorted scan
    returns them), until the end of the current transaction. Sellers without an account are
    left out of the answer."""
    if not connection.in_atomic_block:
        raise RuntimeError("accounts_lock must be called inside transaction.atomic()")
    if len(seller_ids) == 1:
        account = account_lock(cursor, seller_id=seller_ids[0])
        return {} if account is None else {account.seller_id: account}
    _LOCK_ACCOUNTS.execute(cursor, [array_literal(sorted({int(s) for s in seller_ids}))])
    return {row[0]: LockedAccount(*row[:4], bytes(row[4]), row[5]) for row in cursor.fetchall()}


def statement_lock(*, statement_id: int):
    """Lock a statement row until the end of the current transaction: two builds of one statement
    (a redelivered task beside the sweep's) take turns, and the second finds it ready."""
    from ledger.statements.models import Statement

    if not connection.in_atomic_block:
        raise RuntimeError("statement_lock must be called inside transaction.atomic()")
    return Statement.objects.select_for_update(no_key=True).get(pk=statement_id)
