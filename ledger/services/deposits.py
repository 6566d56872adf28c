import logging

from django.db import transaction
from django.utils import timezone

from core.models import Seller
from ledger import events
from ledger.errors import InvalidStateError, NotFoundError, SellerInactiveError
from ledger.models import Deposit
from ledger.services.idempotency import create_once, fingerprint

logger = logging.getLogger(__name__)


@transaction.atomic
def deposit_request(
    *, seller: Seller, amount: int, reference: str = "", idempotency_key: str | None = None
) -> tuple[Deposit, bool]:
    """A seller asks for credit. Moves no money. Returns (deposit, created)."""
    if not seller.user.is_active:
        raise SellerInactiveError()
    fp = fingerprint({"amount": amount, "reference": reference})
    deposit, created = create_once(
        model=Deposit,
        seller_id=seller.pk,
        key=idempotency_key,
        fingerprint_=fp,
        create=lambda: Deposit.objects.create(
            seller=seller, amount=amount, reference=reference, idempotency_key=idempotency_key, request_fingerprint=fp
        ),
    )
    if created:
        _log("deposit requested", "deposit.requested", deposit)
    return deposit, created


def _log(message: str, event: str, deposit: Deposit, **extra) -> None:
    logger.info(
        message,
        extra={
            "event": event,
            "seller_id": deposit.seller_id,
            "deposit_id": deposit.pk,
            "amount": deposit.amount,
            **extra,
        },
    )


def _decide(*, deposit_id: int, to_status: str, decided_by, reason: str = "") -> Deposit:
    # One conditional UPDATE: of any number of concurrent decisions exactly one matches `pending`.
    updated = Deposit.objects.filter(pk=deposit_id, status=Deposit.Status.PENDING).update(
        status=to_status, decided_at=timezone.now(), decided_by=decided_by, reason=reason
    )
    deposit = Deposit.objects.filter(pk=deposit_id).first()
    if deposit is None:
        raise NotFoundError()
    if not updated:
        raise InvalidStateError(f"Deposit {deposit_id} is {deposit.status}, not pending.")
    return deposit


@transaction.atomic
def deposit_approve(*, deposit_id: int, approved_by) -> Deposit:
    """Flip pending -> approving and wake the seller's worker, which credits it in sequence."""
    deposit = _decide(deposit_id=deposit_id, to_status=Deposit.Status.APPROVING, decided_by=approved_by)
    events.intents_recorded(seller_id=deposit.seller_id)
    _log("deposit approving", "deposit.approving", deposit, decided_by=getattr(approved_by, "pk", None))
    return deposit


@transaction.atomic
def deposit_reject(*, deposit_id: int, rejected_by, reason: str = "") -> Deposit:
    deposit = _decide(deposit_id=deposit_id, to_status=Deposit.Status.REJECTED, decided_by=rejected_by, reason=reason)
    events.deposit_rejected(seller_id=deposit.seller_id, deposit_id=deposit.pk, amount=deposit.amount, reason=reason)
    _log("deposit rejected", "deposit.rejected", deposit, decided_by=getattr(rejected_by, "pk", None))
    return deposit
