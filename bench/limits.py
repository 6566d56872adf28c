"""The limit: the ledger's work driven straight at PostgreSQL by `pgbench`, with the scripts in
`bench/pgbench/`: one debit per transaction (`debit.sql`: the "one task, one commit per charge"
design), B debits per transaction computed set-based inside the server (`debits.sql`: an upper
bound the worker can approach but not reach), one queued-charge insert per transaction
(`submit.sql`: what the web writes per request).

They run on scratch copies of the real tables (`CREATE TABLE ... (LIKE ... INCLUDING ALL)`: the
same columns, CHECK constraints, unique and partial indexes; foreign keys added back, deferred like
Django's) in the schema `benchlimit` of the benchmark's own database, which the ledger and its
audit never see, reset and queued before each run. Rows per second are counted from the rows
actually written, not assumed from tps."""

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

SCRIPTS = Path(__file__).with_name("pgbench")  # debit.sql, debits.sql and submit.sql


class PgbenchLimits:
    def __init__(self, database_url: str):
        self.database_url = database_url
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
        self._sql(_RESET, {"sellers": sellers, "per_seller": -(-debits_per_txn * transactions // sellers)})
        variables = {"sellers": sellers, "debits": debits_per_txn, "last_id": 0, "keyset": int(sellers == 1)}
        script = "debit.sql" if debits_per_txn == 1 else "debits.sql"
        spec = {"name": name, "kind": "debits", "debits_per_txn": debits_per_txn, "clients": clients}
        return self._run(script, spec, transactions=transactions, variables=variables, table="entry")

    def submits(self, *, name: str, clients: int, transactions: int, sellers: int = 32) -> dict:
        self._sql(_RESET, {"sellers": sellers, "per_seller": 0})
        spec = {"name": name, "kind": "submit", "debits_per_txn": 1, "clients": clients}
        return self._run("submit.sql", spec, transactions=transactions, variables={"sellers": sellers}, table="charge")

    def _run(self, script: str, spec: dict, *, transactions: int, variables: dict, table: str) -> dict:
        """`script` run by pgbench `transactions` times over `spec["clients"]` connections: `spec`
        with what was measured, `rows_per_s` counted from the rows now in `table`."""
        name, clients = spec["name"], spec["clients"]
        url = urlparse(self.database_url)
        argv = [self.pgbench, "-n", "-M", "prepared", "-f", str(SCRIPTS / script), "-c", str(clients)]
        argv += ["-j", str(min(clients, 2))]
        argv += ["-t", str(max(1, transactions // clients)), "-h", url.hostname or "127.0.0.1"]
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
        return spec | {
            "sellers": variables["sellers"],
            "transactions": done,
            "seconds": seconds,
            "tps": tps,
            "latency_ms": float(latency.group(1)) if latency else None,
            "rows_per_s": self._sql(f"SELECT count(*) FROM {SCHEMA}.{table}") / seconds,
        }
