"""The sandbox's record of what it processed: one SQLite table, one row per external id.

Called from the event loop directly: each statement is a tiny local write (WAL, synchronous
NORMAL), cheaper than a hop to a thread. UNIQUE(external_id) makes the first insert win; a
concurrent identical request finds the winner's row."""

import sqlite3
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
"""
_COLUMNS = "id, external_id, msisdn, amount, status, failure_code, callback_url, created_at, completed_at"


def now_text() -> str:
    return timestamp_text(datetime.now(UTC))


def timestamp_text(moment: datetime) -> str:
    """One fixed ISO 8601 form (UTC, microseconds), so that text order is time order in SQL."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class Store:
    def __init__(self, path: str = ":memory:"):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def insert(
        self, *, external_id: str, msisdn: str, amount: int, status: str, failure_code: str | None, callback_url
    ) -> tuple[dict, bool]:
        """The transaction for `external_id` and whether this call created it."""
        existing = self.by_external_id(external_id)  # first, so that a replay does not use up an id
        if existing is not None:
            return existing, False
        created = now_text()
        final_at = None if status == "SUBMITTED" else created
        row = self.db.execute(
            f"""INSERT INTO transactions (external_id, msisdn, amount, status, failure_code, callback_url,
                                          created_at, completed_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (external_id) DO NOTHING RETURNING {_COLUMNS}""",
            (external_id, msisdn, amount, status, failure_code, callback_url, created, final_at),
        ).fetchone()
        if row is not None:
            return dict(row), True
        return self.by_external_id(external_id), False

    def complete(self, transaction_id: int) -> dict | None:
        """SUBMITTED → COMPLETED; None if it was not SUBMITTED (already completed by another task)."""
        row = self.db.execute(
            f"""UPDATE transactions SET status = 'COMPLETED', completed_at = ?
                WHERE id = ? AND status = 'SUBMITTED' RETURNING {_COLUMNS}""",
            (now_text(), transaction_id),
        ).fetchone()
        return None if row is None else dict(row)

    def by_external_id(self, external_id: str) -> dict | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM transactions WHERE external_id = ?", (external_id,)).fetchone()
        return None if row is None else dict(row)

    def by_id(self, transaction_id: int) -> dict | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM transactions WHERE id = ?", (transaction_id,)).fetchone()
        return None if row is None else dict(row)

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
        return [dict(row) for row in rows]

    def submitted(self) -> list[dict]:
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM transactions WHERE status = 'SUBMITTED' ORDER BY id")
        return [dict(row) for row in rows]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, count(*) FROM transactions GROUP BY status").fetchall())


def public(row: dict) -> dict:
    """A transaction as the API shows it (without its callback_url)."""
    return {key: value for key, value in row.items() if key != "callback_url"}
