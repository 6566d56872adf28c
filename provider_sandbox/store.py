"""The sandbox's record of what it processed, whatever dialect asked: one SQLite table, one row per
external id, and the account whose balance the DT One and Reloadly dialects draw down.

Called from the event loop directly: each statement is a tiny local write (WAL, synchronous
NORMAL), cheaper than a hop to a thread. UNIQUE(external_id) makes the first insert win; a
concurrent identical request finds the winner's row. One event loop runs every request, so a
check followed by a write (the balance draw) is never interleaved with another request's.

Statuses are one vocabulary for every dialect (DT One's class names): CREATED, CONFIRMED,
SUBMITTED, COMPLETED, DECLINED, REJECTED, CANCELLED, REVERSED; `status_detail` is DT One's finer
status message (`DECLINED-INVALID-CREDIT-PARTY`), `failure_code` the own dialect's reason, and
`extra` what a dialect shows of the transaction beyond the columns (JSON)."""

import json
import sqlite3
from contextlib import contextmanager
from datetime import UTC, datetime

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    external_id TEXT NOT NULL UNIQUE,
    msisdn TEXT NOT NULL,
    amount INTEGER NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    callback_url TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX IF NOT EXISTS transactions_created_at ON transactions (created_at);
CREATE TABLE IF NOT EXISTS account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    available INTEGER NOT NULL,
    currency TEXT NOT NULL
);
"""
# Columns added since the first schema: a record file written by an older sandbox gains them.
_ADDED = {
    "dialect": "TEXT NOT NULL DEFAULT 'legacy'",
    "product_id": "TEXT",
    "currency": "TEXT",
    "cost": "INTEGER NOT NULL DEFAULT 0",
    "status_detail": "TEXT",
    "reverse_at": "TEXT",
    "updated_at": "TEXT",
    "extra": "TEXT",
}
_COLUMNS = (
    "id, external_id, msisdn, amount, status, failure_code, callback_url, created_at, completed_at, "
    + ", ".join(_ADDED)
)
OPEN = ("CREATED", "CONFIRMED", "SUBMITTED")  # funds held, not final
FINAL = ("COMPLETED", "DECLINED", "REJECTED", "CANCELLED", "REVERSED")
STATUSES = OPEN + FINAL
LEGACY_KEYS = ("id", "external_id", "msisdn", "amount", "status", "failure_code", "created_at", "completed_at")


def now_text() -> str:
    return timestamp_text(datetime.now(UTC))


def timestamp_text(moment: datetime) -> str:
    """One fixed ISO 8601 form (UTC, microseconds), so that text order is time order in SQL."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _row(row) -> dict | None:
    if row is None:
        return None
    found = dict(row)
    found["extra"] = json.loads(found["extra"]) if found["extra"] else {}
    return found


class Store:
    def __init__(self, path: str = ":memory:", *, balance: int = 0, currency: str = "USD"):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        present = {column["name"] for column in self.db.execute("PRAGMA table_info(transactions)")}
        for name, kind in _ADDED.items():
            if name not in present:
                self.db.execute(f"ALTER TABLE transactions ADD COLUMN {name} {kind}")
        # The starting balance only for a new record: a restarted sandbox keeps what it had left.
        self.db.execute("INSERT OR IGNORE INTO account (id, available, currency) VALUES (1, ?, ?)", (balance, currency))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        """Statements that stand or fall together (the connection autocommits otherwise)."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def insert(
        self,
        *,
        external_id: str,
        msisdn: str,
        amount: int,
        status: str,
        failure_code: str | None,
        callback_url,
        dialect: str = "legacy",
        product_id: str | None = None,
        currency: str | None = None,
        cost: int = 0,
        status_detail: str | None = None,
        reverse_at: str | None = None,
        extra: dict | None = None,
    ) -> tuple[dict, bool]:
        """The transaction for `external_id` and whether this call created it."""
        existing = self.by_external_id(external_id)  # first, so that a replay does not use up an id
        if existing is not None:
            return existing, False
        created = now_text()
        final_at = None if status in OPEN else created
        row = self.db.execute(
            f"""INSERT INTO transactions (external_id, msisdn, amount, status, failure_code, callback_url,
                                          created_at, completed_at, dialect, product_id, currency, cost,
                                          status_detail, reverse_at, updated_at, extra)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (external_id) DO NOTHING RETURNING {_COLUMNS}""",
            (
                external_id,
                msisdn,
                amount,
                status,
                failure_code,
                callback_url,
                created,
                final_at,
                dialect,
                product_id,
                currency,
                cost,
                status_detail,
                reverse_at,
                created,
                json.dumps(extra or {}),
            ),
        ).fetchone()
        if row is not None:
            return _row(row), True
        return self.by_external_id(external_id), False

    def complete(self, transaction_id: int) -> dict | None:
        """SUBMITTED → COMPLETED; None if it was not SUBMITTED (already completed by another task)."""
        return self.move(transaction_id, frm=("SUBMITTED",), to="COMPLETED")

    def move(
        self,
        transaction_id: int,
        *,
        frm: tuple[str, ...],
        to: str,
        detail: str | None = None,
        failure_code: str | None = None,
        reverse_at: str | None = None,
    ) -> dict | None:
        """One status change, only from the statuses `frm`; the row after it, or None. Leaving an
        open status for a failure gives the held cost back (DT One's void); a reversal gives back
        what a completion captured."""
        moment = now_text()
        with self.transaction():
            row = _row(
                self.db.execute(
                    f"""UPDATE transactions
                           SET status = ?, status_detail = ?, failure_code = coalesce(?, failure_code),
                               completed_at = CASE WHEN ? IN {FINAL} THEN coalesce(completed_at, ?) END,
                               reverse_at = ?, updated_at = ?
                         WHERE id = ? AND status IN ({", ".join("?" * len(frm))}) RETURNING {_COLUMNS}""",
                    (to, detail or to, failure_code, to, moment, reverse_at, moment, transaction_id, *frm),
                ).fetchone()
            )
            if row is not None and row["cost"] and to in ("DECLINED", "REJECTED", "CANCELLED", "REVERSED"):
                self.db.execute("UPDATE account SET available = available + ? WHERE id = 1", (row["cost"],))
        return row

    def force(self, external_id: str, *, status: str, detail: str | None, failure_code: str | None) -> dict | None:
        """An operator's status change (/_sandbox/transactions): no balance movement."""
        moment = now_text()
        return _row(
            self.db.execute(
                f"""UPDATE transactions SET status = ?, status_detail = ?, failure_code = ?, updated_at = ?,
                           completed_at = CASE WHEN ? IN {FINAL} THEN coalesce(completed_at, ?) END
                     WHERE external_id = ? RETURNING {_COLUMNS}""",
                (status, detail or status, failure_code, moment, status, moment, external_id),
            ).fetchone()
        )

    def by_external_id(self, external_id: str) -> dict | None:
        return _row(
            self.db.execute(f"SELECT {_COLUMNS} FROM transactions WHERE external_id = ?", (external_id,)).fetchone()
        )

    def by_id(self, transaction_id: int) -> dict | None:
        return _row(self.db.execute(f"SELECT {_COLUMNS} FROM transactions WHERE id = ?", (transaction_id,)).fetchone())

    def page(
        self, *, created_after: datetime | None, created_before: datetime | None, after_id: int, limit: int
    ) -> list[dict]:
        """Transactions with created_after <= created_at < created_before and id > after_id, by id."""
        where, params = ["id > ?"], [after_id]
        if created_after is not None:
            where.append("created_at >= ?")
            params.append(timestamp_text(created_after))
        if created_before is not None:
            where.append("created_at < ?")
            params.append(timestamp_text(created_before))
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM transactions WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", (*params, limit)
        )
        return [_row(row) for row in rows]

    def search(
        self,
        *,
        dialect: str,
        external_id: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[dict], int]:
        """One dialect's transactions, by id, created_from <= created_at <= created_to (both ends
        included, as DT One's and Reloadly's date filters are), and how many match in all."""
        where, params = ["dialect = ?"], [dialect]
        if external_id is not None:
            where.append("external_id = ?")
            params.append(external_id)
        if created_from is not None:
            where.append("created_at >= ?")
            params.append(timestamp_text(created_from))
        if created_to is not None:
            where.append("created_at <= ?")
            params.append(timestamp_text(created_to))
        condition = " AND ".join(where)
        total = self.db.execute(f"SELECT count(*) FROM transactions WHERE {condition}", params).fetchone()[0]
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM transactions WHERE {condition} ORDER BY id LIMIT ? OFFSET ?",
            (*params, limit, offset),
        )
        return [_row(row) for row in rows], total

    def submitted(self) -> list[dict]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM transactions WHERE status = 'SUBMITTED' ORDER BY id")
        return [_row(row) for row in rows]

    def reversals_due(self) -> list[dict]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM transactions WHERE status = 'COMPLETED' AND reverse_at IS NOT NULL ORDER BY id"
        )
        return [_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, count(*) FROM transactions GROUP BY status").fetchall())

    # The account the DT One and Reloadly dialects draw down.

    def account(self) -> dict:
        available, currency = self.db.execute("SELECT available, currency FROM account WHERE id = 1").fetchone()
        holding = self.db.execute(f"SELECT coalesce(sum(cost), 0) FROM transactions WHERE status IN {OPEN}").fetchone()[
            0
        ]
        return {"available": available, "holding": holding, "currency": currency}

    def available(self) -> int:
        return self.db.execute("SELECT available FROM account WHERE id = 1").fetchone()[0]

    def set_available(self, available: int) -> None:
        self.db.execute("UPDATE account SET available = ? WHERE id = 1", (available,))

    def draw(self, cost: int) -> bool:
        """Takes `cost` from the available balance if it covers it."""
        return (
            self.db.execute(
                "UPDATE account SET available = available - ? WHERE id = 1 AND available >= ?", (cost, cost)
            ).rowcount
            == 1
        )

    def refund(self, cost: int) -> None:
        self.db.execute("UPDATE account SET available = available + ? WHERE id = 1", (cost,))


def public(row: dict) -> dict:
    """A transaction as the sandbox's own dialect (/v1) shows it."""
    return {key: row[key] for key in LEGACY_KEYS}
