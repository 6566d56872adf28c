"""The limit: the ledger's work driven straight at PostgreSQL by `pgbench` (`bench/pgbench/`): one
debit per transaction (`debit.sql`), B debits per transaction set-based inside the server
(`debits.sql`, and `debits_unhashed.sql` without the hash step: upper bounds the worker can approach
but not reach), one queued-charge insert per transaction (`submit.sql`: the web's write).

On scratch copies of the real tables (`LIKE ... INCLUDING ALL`, foreign keys added back deferred)
in the schema `benchlimit`, which the ledger never sees, reset before each run. Rows per second are
counted from the rows written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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
CREATE TABLE {SCHEMA}.entry_unhashed (LIKE {SCHEMA}.entry INCLUDING ALL);
ALTER TABLE {SCHEMA}.entry_unhashed DROP COLUMN hash;
ALTER TABLE {SCHEMA}.entry_unhashed ADD FOREIGN KEY (seller_id) REFERENCES {SCHEMA}.seller (id) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE {SCHEMA}.entry_unhashed ADD FOREIGN KEY (charge_id) REFERENCES {SCHEMA}.charge (id) DEFERRABLE INITIALLY DEFERRED;
CREATE SEQUENCE {SCHEMA}.seller_pick;
"""

_RESET = f"""
TRUNCATE {SCHEMA}.entry, {SCHEMA}.entry_unhashed, {SCHEMA}.charge, {SCHEMA}.account, {SCHEMA}.seller;
ALTER SEQUENCE {SCHEMA}.seller_pick RESTART WITH 1;
INSERT INTO {SCHEMA}.seller SELECT g FROM generate_series(1, %(sellers)s) g;
INSERT INTO {SCHEMA}.account (seller_id, balance, last_seq, updated_at)
    SELECT g, 1000000000000, 0, now() FROM generate_series(1, %(sellers)s) g;
INSERT INTO {SCHEMA}.charge (seller_id, phone_number, amount, reference, status, request_fingerprint, created_at)
    SELECT s, '+989120000000', 1000, '', 'queued', '', now()
    FROM generate_series(1, %(per_seller)s) n, generate_series(1, %(sellers)s) s ORDER BY n, s;
"""

SCRIPTS = Path(__file__).with_name("pgbench")  # debit.sql, debits.sql and submit.sql


class PgbenchLimits:
    def __init__(self, database_url: str):
        self.database_url = database_url
        self.pgbench = shutil.which("pgbench")
        self.available = self.pgbench is not None
        if self.available:
            self._sql(_SETUP)

    def _sql(self, sql: str, params: dict | None = None) -> int | None:
        """`sql` autocommitted, the scratch tables analyzed; the first column of its answer if any."""
        conn = psycopg2.connect(self.database_url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                answer = cur.fetchone()[0] if cur.description else None
                cur.execute(
                    f"ANALYZE {SCHEMA}.seller, {SCHEMA}.account, {SCHEMA}.charge, {SCHEMA}.entry, {SCHEMA}.entry_unhashed"
                )
                return answer
        finally:
            conn.close()

    def debits(
        self, *, name: str, debits_per_txn: int, sellers: int, transactions: int, clients: int = 1, hashed=True
    ) -> dict:
        """Settle `transactions` batches of `debits_per_txn` queued charges, each of a different
        seller in turn (`sellers` of them), from `clients` connections; without `hashed`, into
        entries without the hash column (`debits_unhashed.sql`)."""
        self._sql(_RESET, {"sellers": sellers, "per_seller": -(-debits_per_txn * transactions // sellers)})
        variables = {"sellers": sellers, "debits": debits_per_txn, "last_id": 0, "keyset": int(sellers == 1)}
        script = "debit.sql" if debits_per_txn == 1 else "debits.sql" if hashed else "debits_unhashed.sql"
        spec = {"name": name, "kind": "debits", "debits_per_txn": debits_per_txn, "clients": clients}
        table = "entry" if hashed else "entry_unhashed"
        return self._run(script, spec, transactions=transactions, variables=variables, table=table)

    def submits(self, *, name: str, clients: int, transactions: int, sellers: int = 32) -> dict:
        self._sql(_RESET, {"sellers": sellers, "per_seller": 0})
        spec = {"name": name, "kind": "submit", "debits_per_txn": 1, "clients": clients}
        return self._run("submit.sql", spec, transactions=transactions, variables={"sellers": sellers}, table="charge")

    def _run(self, script: str, spec: dict, *, transactions: int, variables: dict, table: str) -> dict:
        """`script` run by pgbench `transactions` times over `spec["clients"]` connections: `spec`
        with what was measured, `rows_per_s` counted from the rows now in `table`."""
        name, clients = spec["name"], spec["clients"]
        url = urlparse(self.database_url)
        argv = [self.pgbench, "-n", "-M", "prepared", "-f", str(SCRIPTS / script), "-c", str(clients), "-j"]
        argv += [str(min(clients, 2)), "-t", str(max(1, transactions // clients)), "-h", url.hostname or "127.0.0.1"]
        argv += ["-p", str(url.port or 5432), "-U", url.username or "postgres"]
        argv += [f"-D{key}={value}" for key, value in variables.items()] + [url.path.lstrip("/")]
        env = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench {name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        tps = float(re.search(r"^tps = ([\d.]+)", proc.stdout, re.M).group(1))
        done = int(re.search(r"number of transactions actually processed: (\d+)", proc.stdout).group(1))
        latency = re.search(r"latency average = ([\d.]+) ms", proc.stdout)
        seconds = done / tps if tps else float("inf")
        rows = self._sql(f"SELECT count(*) FROM {SCHEMA}.{table}")
        return spec | {"sellers": variables["sellers"], "transactions": done, "seconds": seconds, "tps": tps,
                       "latency_ms": float(latency.group(1)) if latency else None, "rows_per_s": rows / seconds}  # fmt: skip
