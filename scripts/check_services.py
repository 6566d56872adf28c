"""Fail early and clearly when PostgreSQL or Redis cannot be reached; create the database if it
is missing. Used by `make up` and `make test` before anything else runs."""

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
import redis
from psycopg2 import sql

# Run as a file (by make and runstack), before Django: the checkout is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core import redis_client  # noqa: E402

HELP = {
    "postgres": "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "redis": 'start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def main() -> int:
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    create = "--create-db" in sys.argv

    url = urlparse(database_url)
    name = url.path.lstrip("/") or "postgres"
    try:
        conn = psycopg2.connect(
            host=url.hostname,
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname="postgres",
            connect_timeout=3,
        )
    except psycopg2.OperationalError as exc:
        print(f"PostgreSQL is not reachable at {url.hostname}:{url.port or 5432}: {exc}".strip(), file=sys.stderr)
        print(HELP["postgres"], file=sys.stderr)
        return 1
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None and create:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")
    conn.close()

    try:
        redis_client.client(
            redis_url,
            master_name=os.environ.get("REDIS_SENTINEL_MASTER") or redis_client.DEFAULT_MASTER_NAME,
            sentinel_password=os.environ.get("REDIS_SENTINEL_PASSWORD", ""),
            socket_connect_timeout=3,
        ).ping()
    except redis.RedisError as exc:
        print(f"Redis is not reachable at {redis_client.redact(redis_url)}: {exc}", file=sys.stderr)
        print(HELP["redis"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
