"""Putting a scenario's starting state into the bench database at bulk speed: sellers, a funding
deposit per seller credited by the posting code itself, and queued charges written with COPY
(the same rows `charge_submit` would write, without the per-request cost the scenario does not
measure)."""

from __future__ import annotations

import io
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.utils import timezone

from core.models import Seller
from ledger.models import Account, Charge, Deposit
from ledger.services.settlement import settle_seller

PHONE = "+989121234567"


def make_sellers(count: int, *, prefix: str) -> list[int]:
    """Sellers with unusable passwords (the HTTP scenario mints tokens instead of logging in)."""
    User = get_user_model()
    unusable = make_password(None)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=f"{prefix}-{n}", password=unusable) for n in range(count)], batch_size=2000
        )
        sellers = Seller.objects.bulk_create(
            [Seller(user=user, name=f"{prefix} {n}") for n, user in enumerate(users)], batch_size=2000
        )
        Account.objects.bulk_create([Account(seller=seller) for seller in sellers], batch_size=2000)
    return [seller.pk for seller in sellers]


def tokens(seller_ids: list[int]) -> list[str]:
    """An access token of each seller's user, in order."""
    from rest_framework_simplejwt.tokens import AccessToken

    users = {s.pk: s.user for s in Seller.objects.select_related("user").filter(pk__in=seller_ids)}
    return [str(AccessToken.for_user(users[sid])) for sid in seller_ids]


def fund(seller_ids: list[int], amount: int) -> None:
    """One deposit per seller, approved and then applied by `settle_seller` (the posting code)."""
    now = timezone.now()
    Deposit.objects.bulk_create(
        [Deposit(seller_id=sid, amount=amount, status=Deposit.Status.APPROVING, decided_at=now) for sid in seller_ids],
        batch_size=2000,
    )
    for sid in seller_ids:
        settle_seller(seller_id=sid)
    left = Deposit.objects.filter(seller_id__in=seller_ids).exclude(status=Deposit.Status.APPROVED).count()
    if left:
        raise RuntimeError(f"{left} funding deposits were not applied")


def queue_charges(seller_ids: list[int], *, per_seller: int, amount: int) -> float:
    """COPY `per_seller` queued charges for each seller, interleaved across sellers the way
    concurrent traffic would arrive. Returns the seconds it took."""
    started = time.monotonic()
    now = timezone.now().isoformat()
    buf = io.StringIO()
    for _ in range(per_seller):
        for sid in seller_ids:
            buf.write(f"{sid}\t{PHONE}\t{amount}\t\t{Charge.Status.QUEUED}\t\t{now}\n")
    buf.seek(0)
    with transaction.atomic(), connection.cursor() as cur:
        cur.copy_expert(
            "COPY ledger_charge (seller_id, phone_number, amount, reference, status, request_fingerprint, created_at)"
            " FROM STDIN",
            buf,
        )
    with connection.cursor() as cur:
        cur.execute("ANALYZE ledger_charge")
    return time.monotonic() - started


def unsettled(seller_ids: list[int], *, reserved: bool = False) -> bool:
    """Whether charges of these sellers wait for a final status (queued, or held for the
    provider's answer), or with `reserved` for their reservation, or deposits for their credit."""
    column = "stage" if reserved else "status"
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT EXISTS (SELECT 1 FROM ledger_charge WHERE {column} = 'queued' AND seller_id = ANY(%(ids)s))"
            " OR EXISTS (SELECT 1 FROM ledger_deposit WHERE status = 'approving' AND seller_id = ANY(%(ids)s))",
            {"ids": seller_ids},
        )
        return cur.fetchone()[0]


def wait_until_settled(check, *, timeout: float, interval: float = 0.02) -> float:
    """Poll `check()` (true while work remains) until false; returns the wall-clock time seen."""
    deadline = time.monotonic() + timeout
    while check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"still unsettled after {timeout}s")
        time.sleep(interval)
    return time.time()
