"""A scenario's starting state at bulk speed: sellers, funding credited by the posting code, queued
charges by COPY (the rows `charge_submit` writes) and long histories as the settle writes them."""

from __future__ import annotations

import hashlib
import io
import time
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.utils import timezone

from core.models import Seller
from ledger.models import Account, Charge, Deposit
from ledger.services.settlement import settle_seller
from ledger.statements.chain import GENESIS, chain_hash, epoch_microseconds

PHONE = "+989121234567"
AMOUNT = 1_000  # of the charges `append_charges` writes


def make_sellers(count: int, *, prefix: str) -> list[int]:
    """Sellers with unusable passwords (the HTTP scenario mints tokens instead of logging in)."""
    User = get_user_model()
    unusable = make_password(None)
    with transaction.atomic():
        users = User.objects.bulk_create([User(username=f"{prefix}-{n}", password=unusable) for n in range(count)])
        sellers = Seller.objects.bulk_create([Seller(user=user, name=f"{prefix} {n}") for n, user in enumerate(users)])
        Account.objects.bulk_create([Account(seller=seller) for seller in sellers])
    return [seller.pk for seller in sellers]


def tokens(seller_ids: list[int]) -> list[str]:
    """An access token of each seller's user, in order."""
    from rest_framework_simplejwt.tokens import AccessToken

    users = {s.pk: s.user for s in Seller.objects.select_related("user").filter(pk__in=seller_ids)}
    return [str(AccessToken.for_user(users[sid])) for sid in seller_ids]


def fund(seller_ids: list[int], amount: int) -> None:
    """One deposit per seller, approved and then applied by `settle_seller` (the posting code)."""
    now, approving = timezone.now(), Deposit.Status.APPROVING
    Deposit.objects.bulk_create(
        [Deposit(seller_id=s, amount=amount, status=approving, decided_at=now) for s in seller_ids]
    )
    for sid in seller_ids:
        settle_seller(seller_id=sid)
    if left := Deposit.objects.filter(seller_id__in=seller_ids).exclude(status=Deposit.Status.APPROVED).count():
        raise RuntimeError(f"{left} funding deposits were not applied")


def queue_charges(seller_ids: list[int], *, per_seller: int, amount: int) -> float:
    """COPY `per_seller` queued charges per seller, interleaved as traffic arrives; the seconds it took."""
    started = time.monotonic()
    now = timezone.now().isoformat()
    buf = io.StringIO()
    for _ in range(per_seller):
        for sid in seller_ids:
            buf.write(f"{sid}\t{PHONE}\t{amount}\t\t{Charge.Status.QUEUED}\t\t{now}\n")
    buf.seek(0)
    columns = "seller_id, phone_number, amount, reference, status, request_fingerprint, created_at"
    with transaction.atomic(), connection.cursor() as cur:
        cur.copy_expert(f"COPY ledger_charge ({columns}) FROM STDIN", buf)
    with connection.cursor() as cur:
        cur.execute("ANALYZE ledger_charge")
    return time.monotonic() - started


def unsettled(seller_ids: list[int], *, reserved: bool = False) -> bool:
    """Whether charges of these sellers wait for a final status (with `reserved`: for their
    reservation), or deposits for their credit."""
    column = "stage" if reserved else "status"
    with connection.cursor() as cur:
        cur.execute(f"""SELECT EXISTS (SELECT 1 FROM ledger_charge WHERE {column} = 'queued' AND seller_id = ANY(%(ids)s))
                         OR EXISTS (SELECT 1 FROM ledger_deposit WHERE status = 'approving' AND seller_id = ANY(%(ids)s))""",
                    {"ids": seller_ids})  # fmt: skip
        return cur.fetchone()[0]


def wait_until_settled(check, *, timeout: float, interval: float = 0.02) -> float:
    """Poll `check()` (true while work remains) until false; returns the wall-clock time seen."""
    deadline = time.monotonic() + timeout
    while check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still unsettled after {timeout}s")
        time.sleep(interval)
    return time.time()


def long_history(
    seller_id: int, *, entries: int, start: datetime, end: datetime, batch: int = 1_000, external_ids: str = ""
) -> dict:
    """A seller's history of `entries` entries in [start, end) as the settle writes it: a deposit,
    then `entries - 1` succeeded charges (`append_charges`) in settles spread evenly. What it wrote:
    the totals per kind, the settles' times (the deposit's first), the funding, the charges' ids."""
    charges, batches = entries - 1, -(-(entries - 1) // batch)
    fund, step = charges * AMOUNT + 1_000_000, (end - start) // (batches + 2)
    times = [start + k * step for k in range(batches + 2)]
    deposit = Deposit.objects.create(seller_id=seller_id, amount=fund, status=Deposit.Status.APPROVED,
                                     decided_at=start, applied_at=start, balance_after=fund)  # fmt: skip
    Deposit.objects.filter(pk=deposit.pk).update(created_at=start - step / 2)
    head = chain_hash(
        GENESIS, f"v1|{seller_id}|1|deposit|{fund}|{fund}||{deposit.pk}|{epoch_microseconds(start)}".encode()
    )
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO ledger_entry ({_ENTRY_COLUMNS}) VALUES (%s, 1, 'deposit', %s, 0, %s, NULL, %s, %s, 0, %s)",
            [seller_id, fund, fund, deposit.pk, start, head],
        )
        cur.execute(
            "UPDATE ledger_account SET balance = %s, last_seq = 1, last_hash = %s, updated_at = %s"
            " WHERE seller_id = %s",
            [fund, head, start, seller_id],
        )
    ids = append_charges([seller_id], charges, times=times[1:], batch=batch, external_ids=external_ids)
    totals = {"deposit": {"count": 1, "amount": fund}, "charge": {"count": charges, "amount": -charges * AMOUNT}}
    return {"totals": totals, "times": times, "fund": fund, "amount": AMOUNT, "batch": batch, "charge_ids": ids}


def append_charges(sellers: list[int], count: int, *, times: list[datetime], batch: int, external_ids="") -> list[int]:
    """`count` succeeded charges of `AMOUNT` for each seller after its chain's head, as the settle
    writes them: reserved `batch` a settle at `times[b]` (`held_after` as the settle counts it), each
    posted by the next (the last ones at `times[-1]`, writing no entry); with `external_ids`, sent
    under that prefix and their id. The charges in SQL, their entries by one COPY with the hash
    chain computed here (`ledger.statements.chain`), the accounts moved to the new heads. Their ids."""
    at, text, buf, ids = [epoch_microseconds(t) for t in times], [t.isoformat() for t in times], io.StringIO(), []
    with transaction.atomic(), connection.cursor() as cur:
        # Without the foreign keys' row triggers, as pg_restore loads: a million deferred checks
        # would take longer than the rest, and every row refers to rows just written.
        cur.execute("SET LOCAL session_replication_role = replica")
        for seller_id in sellers:
            cur.execute("SELECT balance, last_seq, last_hash FROM ledger_account WHERE seller_id = %s", [seller_id])
            fund, seq, head = cur.fetchone()
            params = {"seller": seller_id, "n": count, "batch": batch, "amount": AMOUNT, "fund": fund, "times": times}
            cur.execute(_HISTORY_CHARGES, params | {"phone": PHONE})
            charge_ids, head = sorted(row[0] for row in cur.fetchall()), bytes(head)
            for n, charge_id in enumerate(charge_ids, 1):
                b, balance = (n - 1) // batch, fund - n * AMOUNT
                canonical = f"v1|{seller_id}|{seq + n}|charge|{-AMOUNT}|{balance}|{charge_id}||{at[b]}".encode()
                head = hashlib.sha256(head + canonical).digest()
                buf.write(f"{seller_id}\t{seq + n}\tcharge\t{-AMOUNT}\t{balance + AMOUNT}\t{balance}\t{charge_id}\t\\N\t"
                          f"{text[b]}\t{((n - 1) % batch + 1) * AMOUNT}\t\\\\x{head.hex()}\n")  # fmt: skip
            cur.execute("UPDATE ledger_account SET balance = %s, last_seq = %s, last_hash = %s, updated_at = %s"
                        " WHERE seller_id = %s", [fund - count * AMOUNT, seq + count, head, times[-1], seller_id])  # fmt: skip
            ids += charge_ids
        buf.seek(0)
        cur.copy_expert(f"COPY ledger_entry ({_ENTRY_COLUMNS}) FROM STDIN", buf)
        if external_ids:
            cur.execute("UPDATE ledger_charge SET external_id = %s || id WHERE id = ANY(%s)", [external_ids, ids])
    with connection.cursor() as cur:
        cur.execute("ANALYZE ledger_entry, ledger_charge")
    return ids


_ENTRY_COLUMNS = "seller_id, seq, kind, amount, balance_before, balance_after, charge_id, deposit_id, created_at, held_after, hash"  # fmt: skip
# Charge n of settle b = (n - 1) / batch: asked a second before it, reserved and sent by it,
# answered a second later, posted by the next settle.
_HISTORY_CHARGES = """
INSERT INTO ledger_charge (seller_id, phone_number, amount, reference, status, balance_after, request_fingerprint,
                           created_at, reserved_at, submitted_at, outcome, outcome_at, settled_at, stage, checks)
SELECT %(seller)s, %(phone)s, %(amount)s, '', 'succeeded', %(fund)s - n * %(amount)s, '', t.at - interval '1 s',
       t.at, t.at, 'succeeded', t.at + interval '1 s', t.next, 'done', 0
  FROM generate_series(1, %(n)s) n,
       LATERAL (SELECT (%(times)s::timestamptz[])[(n - 1) / %(batch)s + 1] AS at,
                       (%(times)s::timestamptz[])[(n - 1) / %(batch)s + 2] AS next) t
 ORDER BY n
RETURNING id"""
