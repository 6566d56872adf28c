"""Recording a charge: the one service behind `POST /api/v1/charges/` (and every other caller
that records a single charge).

One guarded statement records it: `INSERT ... SELECT ... WHERE EXISTS (the seller's user is
active)`, so a concurrent deactivation cannot slip between the check and the insert, and the
common request costs one round trip. Who may act for the seller (authentication, roles, revoked
tokens) is the caller's to decide before: the API's authentication classes and permissions.
With an idempotency key, `ON CONFLICT DO NOTHING` on the per-seller unique key lets concurrent
requests with one key record one charge: a loser waits for the winner's commit, then reads it.

Outside a transaction the statement autocommits, and the wake-up registered with
`transaction.on_commit` runs at once, as Django runs such callbacks outside an atomic block."""

import logging

from django.db import connection
from django.utils import timezone

from core.db.prepared import PreparedStatement
from ledger import events
from ledger.errors import IdempotencyKeyReusedError, SellerInactiveError
from ledger.models import Charge
from ledger.services.idempotency import fingerprint

logger = logging.getLogger(__name__)


# $1-$7: the charge's columns. Answers (allowed, id): allowed is false when the seller's user is
# not active; id is NULL then, or when the key names a charge already.
_RECORD_CHARGE = PreparedStatement(
    "ledger_charge_record",
    f"""WITH allowed AS (
        SELECT EXISTS (
            SELECT 1 FROM core_seller s JOIN auth_user u ON u.id = s.user_id WHERE s.id = $1 AND u.is_active
        ) AS ok
    ), recorded AS (
        INSERT INTO ledger_charge
            (seller_id, phone_number, amount, reference, idempotency_key, request_fingerprint, created_at, status)
        SELECT $1, $2, $3, $4, $5, $6, $7, '{Charge.Status.QUEUED}' FROM allowed WHERE ok
        ON CONFLICT (seller_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
    )
    SELECT ok, (SELECT id FROM recorded) FROM allowed""",
    ["bigint", "varchar", "bigint", "varchar", "varchar", "varchar", "timestamptz"],
)


def charge_submit(
    *,
    seller_id: int,
    phone_number: str,
    amount: int,
    reference: str = "",
    idempotency_key: str | None = None,
) -> tuple[Charge, bool]:
    """Record a charge as `queued` and wake the seller's worker after commit. Returns
    (charge, created): an idempotency key already used with the same request returns its
    original charge, with another request raises IdempotencyKeyReusedError.

    Takes no lock and reads no balance: whether it succeeds is decided by the worker.
    `phone_number` must already be normalized to E.164 (`core.fields`). Raises
    SellerInactiveError, recording nothing, when the seller's user is not active."""
    request_fingerprint = fingerprint({"phone_number": phone_number, "amount": amount, "reference": reference})
    created_at = timezone.now()
    with connection.cursor() as cursor:
        _RECORD_CHARGE.execute(
            cursor,
            [
                seller_id,
                phone_number,
                amount,
                reference,
                idempotency_key,
                request_fingerprint,
                created_at,
            ],
        )
        allowed, charge_id = cursor.fetchone()
    if not allowed:
        raise SellerInactiveError()
    if charge_id is None:
        return _recorded_for_key(seller_id, idempotency_key, request_fingerprint), False
    charge = Charge(
        id=charge_id,
        seller_id=seller_id,
        phone_number=phone_number,
        amount=amount,
        reference=reference,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        created_at=created_at,
    )
    events.intents_recorded(seller_id=seller_id)
    logger.info(
        "charge queued",
        extra={"event": "charge.queued", "seller_id": seller_id, "charge_id": charge.pk, "amount": amount},
    )
    return charge, True


def _recorded_for_key(seller_id: int, key: str, request_fingerprint: str) -> Charge:
    """The charge an idempotency key already names: the same request answers it, another is refused."""
    existing = Charge.objects.get(seller_id=seller_id, idempotency_key=key)
    if existing.request_fingerprint != request_fingerprint:
        raise IdempotencyKeyReusedError()
    return existing
