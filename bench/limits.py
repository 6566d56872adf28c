"""The limit: the ledger's debit-and-entry work driven straight at PostgreSQL with `pgbench`.

Scratch copies of the real tables (`CREATE TABLE ... (LIKE ... INCLUDING ALL)`: the same columns,
CHECK constraints, unique and partial indexes; foreign keys added back, deferred like Django's)
live in the schema `benchlimit` of the benchmark's own database, so the ledger and its audit
never see them. Each run resets them, queues charges, and lets pgbench settle them:

- `debits=1`: one debit per transaction, the statements of `ledger.posting` for a single intent
  (lock the account, read the oldest queued charge, insert its entry, mark it reserved, update
  the account's balance and hold): the "one task, one commit per charge" design.
- `debits=B`: B debits per transaction, set-based (one INSERT ... SELECT of B entries, one UPDATE
  of B charges), computed entirely inside the server. It ships no rows to a client and back, so
  it is an upper bound the Python worker can approach but not reach.
- `submit`: one queued charge inserted per transaction, what the web layer writes per request.

Debits per second are counted from the entries actually written (not assumed from tps). Each entry
stores a 32-byte hash as the settle's do; the settle computes its chain in Python before the insert,
so here one `sha256()` per row stands for it (the database's share: the column and its bytes)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import psycopg2

SCHEMA = "benchlimit"

_SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.seller (id bigint PRIMARY KEY);
CREATE TABLE {SCHEMA}.account (LIKE public.ledger_account INCLUDING ALL);
CREATE TABLE {SCHEMA}.charge (LIKE public.ledger_charge INCLUDING ALL);
CREATE TABLE {SCHEMA}.entry (LIKE public.ledger_entry INCLUDING ALL);
ALTER TABLE {SCHEMA}.account ADD FOREIGN KEY (seller_id) REFERENCES {SCHEMA}.seller (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE {SCHEMA}.charge ADD FOREIGN KEY (seller_id) REFERENCES {SCHEMA}.seller (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE {SCHEMA}.entry ADD FOREIGN KEY (seller_id) REFERENCES {SCHEMA}.seller (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE {SCHEMA}.entry ADD FOREIGN KEY (charge_id) REFERENCES {SCHEMA}.charge (id) DEFERRABLE INITIALLY DEFERRED;
CREATE SEQUENCE {SCHEMA}.seller_pick;
"""

_RESET = f"""
TRUNCATE {SCHEMA}.entry, {SCHEMA}.charge, {SCHEMA}.account, {SCHEMA}.seller;
ALTER SEQUENCE {SCHEMA}.seller_pick RESTART WITH 1;
INSERT INTO {SCHEMA}.seller SELECT g FROM generate_series(1, %(sellers)s) g;
INSERT INTO {SCHEMA}.account (seller_id, balance, last_seq, updated_at)
    SELECT g, 1000000000000, 0, now() FROM generate_series(1, %(sellers)s) g;
INSERT INTO {SCHEMA}.charge (seller_id, phone_number, amount, reference, status, request_fingerprint, created_at)
    SELECT s, '+989120000000', 1000, '', 'queued', '', now()
    FROM generate_series(1, %(per_seller)s) n, generate_series(1, %(sellers)s) s ORDER BY n, s;
"""

# Each client remembers the last charge it settled (`last_id`, pgbench variables live as long as
# the client) and, on a single hot row (`keyset` = 1), starts its next lookup after it: the
# database's best plan for a drain. Without it the lookup re-reads every charge already settled
# (docs/performance.md, hot seller), and the limit would carry the flaw it is there to expose.
# With several rows each transaction takes a new seller, so the lookup starts from 0.

# One debit per transaction: the statements of `ledger.posting` for a batch of one.
_SINGLE = f"""
SELECT nextval('{SCHEMA}.seller_pick') % :sellers + 1 AS s \\gset
\\set after :keyset * :last_id
BEGIN;
SELECT balance, last_seq FROM {SCHEMA}.account WHERE seller_id = :s FOR NO KEY UPDATE \\gset
SELECT id AS cid, amount AS amt, id AS last_id FROM {SCHEMA}.charge
    WHERE seller_id = :s AND stage = 'queued' AND id > :after ORDER BY id LIMIT 1 \\gset
INSERT INTO {SCHEMA}.entry (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at, held_after, hash)
    VALUES (:s, :last_seq::bigint + 1, 'charge', -:amt::bigint, :balance::bigint, :balance::bigint - :amt::bigint, :cid, NULL, now(), :amt::bigint, sha256(int8send(:cid::bigint)));
UPDATE {SCHEMA}.charge SET stage = 'reserved', reserved_at = now(), balance_after = :balance::bigint - :amt::bigint
    WHERE id = :cid AND stage = 'queued';
UPDATE {SCHEMA}.account SET balance = :balance::bigint - :amt::bigint, held = held + :amt::bigint, last_seq = :last_seq::bigint + 1, updated_at = now() WHERE seller_id = :s;
END;
"""

# B debits per transaction, set-based, computed inside the server.
_BATCH = f"""
SELECT nextval('{SCHEMA}.seller_pick') % :sellers + 1 AS s \\gset
\\set after :keyset * :last_id
BEGIN;
SELECT balance, last_seq FROM {SCHEMA}.account WHERE seller_id = :s FOR NO KEY UPDATE \\gset
WITH batch AS (
    SELECT id, amount, row_number() OVER (ORDER BY id) AS rn, sum(amount) OVER (ORDER BY id) AS cum
    FROM (SELECT id, amount FROM {SCHEMA}.charge WHERE seller_id = :s AND stage = 'queued' AND id > :after
          ORDER BY id LIMIT :debits::bigint) q
), ins AS (
    INSERT INTO {SCHEMA}.entry (seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at, held_after, hash)
    SELECT :s, :last_seq::bigint + rn, 'charge', -amount, :balance::bigint - cum + amount, :balance::bigint - cum, id, NULL, now(), cum, sha256(int8send(id)) FROM batch
    RETURNING charge_id, balance_after
), upd AS (
    UPDATE {SCHEMA}.charge c SET stage = 'reserved', reserved_at = now(), balance_after = ins.balance_after
    FROM ins WHERE c.id = ins.charge_id AND c.stage = 'queued' RETURNING c.id
), acct AS (
    UPDATE {SCHEMA}.account SET balance = :balance::bigint - (SELECT coalesce(sum(amount), 0) FROM batch),
        held = held + (SELECT coalesce(sum(amount), 0) FROM batch), last_seq = :last_seq::bigint + (SELECT count(*) FROM upd), updated_at = now() WHERE seller_id = :s
    RETURNING seller_id
)
SELECT coalesce(max(upd.id), :after) AS last_id, (SELECT count(*) FROM acct) AS accounts FROM upd \\gset
END;
"""

# What the web layer writes per accepted charge: one queued row, one commit.
_SUBMIT = f"""
\\set s random(1, :sellers)
INSERT INTO {SCHEMA}.charge (seller_id, phone_number, amount, reference, status, request_fingerprint, created_at)
    VALUES (:s, '+989120000000', 1000, '', 'queued', '', now());
"""


class PgbenchLimits:
    def __init__(self, database_url: str, work_dir: Path):
        self.database_url = database_url
        self.work_dir = work_dir
        self.pgbench = shutil.which("pgbench")
        self.available = self.pgbench is not None
        if self.available:
            self._sql(_SETUP)

    def _sql(self, sql: str, params: dict | None = None) -> int | None:
        """Runs `sql` autocommitted, then analyzes the scratch tables; the first column of its
        answer, if it has one."""
        conn = psycopg2.connect(self.database_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                answer = cur.fetchone()[0] if cur.description else None
                cur.execute(f"ANALYZE {SCHEMA}.seller, {SCHEMA}.account, {SCHEMA}.charge, {SCHEMA}.entry")
                return answer
        finally:
            conn.close()

    def debits(self, *, name: str, debits_per_txn: int, sellers: int, transactions: int, clients: int = 1) -> dict:
        """Settle `transactions` batches of `debits_per_txn` queued charges, each of a different
        seller in turn (`sellers` of them), from `clients` connections."""
        per_seller = -(-debits_per_txn * transactions // sellers)
        self._sql(_RESET, {"sellers": sellers, "per_seller": per_seller})
        variables = {"sellers": sellers, "debits": debits_per_txn, "last_id": 0, "keyset": int(sellers == 1)}
        script = _SINGLE if debits_per_txn == 1 else _BATCH
        result = self._run(name, script, clients=clients, transactions=transactions, variables=variables)
        rows = self._sql(f"SELECT count(*) FROM {SCHEMA}.entry")
        return {
            "name": name,
            "kind": "debits",
            "debits_per_txn": debits_per_txn,
            "clients": clients,
            "sellers": sellers,
            **result,
            "rows_per_s": rows / result["seconds"],
        }

    def submits(self, *, name: str, clients: int, transactions: int, sellers: int = 32) -> dict:
        self._sql(_RESET, {"sellers": sellers, "per_seller": 0})
        result = self._run(name, _SUBMIT, clients=clients, transactions=transactions, variables={"sellers": sellers})
        rows = self._sql(f"SELECT count(*) FROM {SCHEMA}.charge")
        return {
            "name": name,
            "kind": "submit",
            "debits_per_txn": 1,
            "clients": clients,
            "sellers": sellers,
            **result,
            "rows_per_s": rows / result["seconds"],
        }

    def _run(self, name: str, script: str, *, clients: int, transactions: int, variables: dict) -> dict:
        url = urlparse(self.database_url)
        with tempfile.NamedTemporaryFile("w", suffix=".sql", dir=self.work_dir, delete=False) as fh:
            fh.write(script)
        argv = [
            self.pgbench,
            "-n",
            "-M",
            "prepared",
            "-f",
            fh.name,
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-t",
            str(max(1, transactions // clients)),
            "-h",
            url.hostname or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
        ]
        for key, value in variables.items():
            argv += ["-D", f"{key}={value}"]
        argv.append(url.path.lstrip("/"))
        env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        Path(fh.name).unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench {name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        tps = float(re.search(r"^tps = ([\d.]+)", proc.stdout, re.M).group(1))
        done = int(re.search(r"number of transactions actually processed: (\d+)", proc.stdout).group(1))
        latency = re.search(r"latency average = ([\d.]+) ms", proc.stdout)
        return {
            "transactions": done,
            "seconds": done / tps if tps else float("inf"),
            "tps": tps,
            "latency_ms": float(latency.group(1)) if latency else None,
        }
