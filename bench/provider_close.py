"""How long the daily close of a provider takes over N charges: `python -m bench.provider_close
--charges 100000` against a scratch database (DATABASE_URL, migrated; never a live one: it
inserts a seller and N succeeded charges sent today, with no entries behind them) and a sandbox
whose record it writes first (one transaction per charge, completed, under the same external id,
one in a thousand with another amount). Prints the close's counts and its time (docs/performance.md,
"Provider close")."""

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--charges", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from core.models import Seller
    from devstack.sandbox import SandboxProcess
    from ledger.fulfilment.identity import external_id_prefix
    from ledger.provider_account.close import close_day
    from provider_sandbox.store import Store, timestamp_text
    from providers import get_provider

    settings.PROVIDER_EXTERNAL_ID_PREFIX = f"bench{uuid.uuid4().hex[:6]}_"
    prefix, now = external_id_prefix(), datetime.now(UTC)
    user = get_user_model().objects.create_user(username=f"close-bench-{uuid.uuid4().hex[:6]}")
    seller = Seller.objects.create(user=user, name=user.username)
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO ledger_charge (seller_id, phone_number, amount, reference, status, balance_after,
                   request_fingerprint, created_at, settled_at, stage, reserved_at, submitted_at, outcome,
                   outcome_at, checks, external_id)
               SELECT %s, '+989121234567', 1000, '', 'succeeded', 0, '', now(), now(), 'done', now(), now(),
                      'succeeded', now(), 0, %s || n FROM generate_series(1, %s) n""",
            [seller.pk, prefix, args.charges],
        )
    inserted = time.monotonic() - started
    work = Path(tempfile.mkdtemp(prefix="close-bench-"))
    store = Store(str(work / "sandbox.db"), balance=10**12)
    created = timestamp_text(now)
    with store.transaction():
        store.db.executemany(
            "INSERT INTO transactions (external_id, msisdn, amount, status, created_at, completed_at)"
            " VALUES (?, '+989121234567', ?, 'COMPLETED', ?, ?)",
            ((f"{prefix}{n}", 1001 if n % 1000 == 0 else 1000, created, created) for n in range(1, args.charges + 1)),
        )
    store.close()
    sandbox = SandboxProcess(work, db=work / "sandbox.db").start()
    try:
        settings.PROVIDER_KIND, settings.PROVIDER_URL = "sandbox", sandbox.url
        get_provider.cache_clear()
        started = time.monotonic()
        close = close_day(get_provider(), now.date())
        took = time.monotonic() - started
    finally:
        sandbox.stop()
        with connection.cursor() as cursor:  # the next run's close must not find them
            cursor.execute("DELETE FROM ledger_charge WHERE seller_id = %s", [seller.pk])
    print(f"inserted {args.charges} charges in {inserted:.1f}s")
    print(
        f"close: {close.charges} charges, {close.transactions} transactions, {close.matched} matched,"
        f" {close.mismatched} mismatched, {close.missing_at_provider} missing there, {close.missing_here} missing here"
    )
    print(f"close took {took:.1f}s ({close.charges / took:,.0f} charges/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
