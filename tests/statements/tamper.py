"""What an operator with write access to the database could do to a seller's history, for the
tests that check the audit and the seller's verifier catch it. Each runs in the caller's
transaction with the append-only trigger set aside for that transaction only."""

from django.db import connection


def _sql(statement: str, params: list) -> None:
    with connection.cursor() as cursor:
        # ALTER TABLE refuses to run while the transaction's deferred foreign-key checks wait.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only")
        cursor.execute(statement, params)
        cursor.execute("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only")


def edit_amount(seller_id: int, seq: int, delta: int) -> None:
    """Move an entry's amount and its resulting balance by `delta` (its own arithmetic still holds)."""
    _sql(
        "UPDATE ledger_entry SET amount = amount + %s, balance_after = balance_after + %s WHERE seller_id = %s AND seq = %s",
        [delta, delta, seller_id, seq],
    )


def delete_entry(seller_id: int, seq: int) -> None:
    _sql("DELETE FROM ledger_entry WHERE seller_id = %s AND seq = %s", [seller_id, seq])


def swap_entries(seller_id: int, first: int, second: int) -> None:
    """Exchange two entries' places in the sequence (each keeps its content and hash)."""
    moves = [(first, 10**15), (second, first), (10**15, second)]  # the (seller, seq) index is not deferrable
    for old, new in moves:
        _sql("UPDATE ledger_entry SET seq = %s WHERE seller_id = %s AND seq = %s", [new, seller_id, old])


def delete_newest(seller_id: int, after_seq: int) -> None:
    """Remove every entry after `after_seq` and move the account back to it, as if they never were."""
    _sql("DELETE FROM ledger_entry WHERE seller_id = %s AND seq > %s", [seller_id, after_seq])
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_account a SET last_seq = e.seq, balance = e.balance_after, last_hash = e.hash
                 FROM ledger_entry e WHERE e.seller_id = a.seller_id AND a.seller_id = %s AND e.seq = %s""",
            [seller_id, after_seq],
        )
