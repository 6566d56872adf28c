import logging

from django.db import transaction

from core.models import Seller
from ledger import events
from ledger.errors import SellerInactiveError
from ledger.models import Charge
from ledger.services.idempotency import create_once, fingerprint

logger = logging.getLogger(__name__)


@transaction.atomic
def charge_submit(
    *, seller: Seller, phone_number: str, amount: int, reference: str = "", idempotency_key: str | None = None
) -> tuple[Charge, bool]:
    """Record a charge as `queued` and wake the seller's worker after commit.

    Takes no lock and reads no balance: whether it succeeds is decided by the worker.
    `phone_number` must already be normalized to E.164. Returns (charge, created)."""
    if not seller.user.is_active:
        raise SellerInactiveError()
    fp = fingerprint({"phone_number": phone_number, "amount": amount, "reference": reference})
    charge, created = create_once(
        model=Charge,
        seller_id=seller.pk,
        key=idempotency_key,
        fingerprint_=fp,
        create=lambda: Charge.objects.create(
            seller=seller,
            phone_number=phone_number,
            amount=amount,
            reference=reference,
            idempotency_key=idempotency_key,
            request_fingerprint=fp,
        ),
    )
    if created:
        events.intents_recorded(seller_id=seller.pk)
        logger.info(
            "charge queued",
            extra={"event": "charge.queued", "seller_id": seller.pk, "charge_id": charge.pk, "amount": amount},
        )
    return charge, created
