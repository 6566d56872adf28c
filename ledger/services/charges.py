"""Recording a charge: the one service behind `POST /api/v1/charges/` (and every other caller
that records a single charge).

What the charge sells is resolved first, from the catalog, with no network call
(`catalog.sales`): the product, the destination amount, the seller's price (the charge's
`amount`, which the settle holds) and the provider's cost. A charge naming a quote sells what the
quote locked and uses the quote up in the same transaction (the charge's `quote` is unique).

One guarded statement records it: `INSERT ... SELECT ... WHERE EXISTS (the seller's user is
active)`, so a concurrent deactivation cannot slip between the check and the insert, and the
common request costs one round trip. Who may act for the seller (authentication, roles, revoked
tokens) is the caller's to decide before: the API's authentication classes and permissions.
With an idempotency key, `ON CONFLICT DO NOTHING` on the per-seller unique key lets concurrent
requests with one key record one charge: a loser waits for the winner's commit, then reads it.

Outside a transaction the statement autocommits, and the wake-up registered with
`transaction.on_commit` runs at once, as Django runs such callbacks outside an atomic block."""

import logging

from django.db import connection, transaction
from django.utils import timezone

from catalog.sales import Sale, sale_for_charge, sale_of_quote
from catalog.services.quotes import quote_use
from core.db.prepared import PreparedStatement
from core.errors import DomainError
from ledger import events
from ledger.errors import IdempotencyKeyReusedError, SellerInactiveError
from ledger.models import Charge
from ledger.services.idempotency import fingerprint

logger = logging.getLogger(__name__)


# $1-$14: the charge's columns. Answers (allowed, id): allowed is false when the seller's user is
# not active; id is NULL then, or when the key names a charge already.
_RECORD_CHARGE = PreparedStatement(
    "ledger_charge_record",
    f"""WITH allowed AS (
        SELECT EXISTS (
            SELECT 1 FROM core_seller s JOIN auth_user u ON u.id = s.user_id WHERE s.id = $1 AND u.is_active
        ) AS ok
    ), recorded AS (
        INSERT INTO ledger_charge
            (seller_id, phone_number, amount, reference, idempotency_key, request_fingerprint, created_at, status,
             operator_id, product_id, product_version_id, cost, destination_amount, destination_currency, quote_id)
        SELECT $1, $2, $3, $4, $5, $6, $7, '{Charge.Status.QUEUED}', $8, $9, $10, $11, $12, $13, $14 FROM allowed WHERE ok
        ON CONFLICT (seller_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id
    )
    SELECT ok, (SELECT id FROM recorded) FROM allowed""",
    [
        "bigint",
        "varchar",
        "bigint",
        "varchar",
        "varchar",
        "varchar",
        "timestamptz",
        "bigint",  # operator
        "bigint",  # product
        "bigint",  # product version
        "bigint",  # cost
        "bigint",  # destination amount
        "varchar",  # destination currency
        "bigint",  # quote
    ],
)


def charge_submit(
    *,
    seller_id: int,
    phone_number: str | None = None,
    amount: int | None = None,
    product: int | None = None,
    operator: int | None = None,
    quote: int | None = None,
    reference: str = "",
    idempotency_key: str | None = None,
) -> tuple[Charge, bool]:
    """Record a charge as `queued` and wake the seller's worker after commit. Returns
    (charge, created): an idempotency key already used with the same request returns its
    original charge, with another request raises IdempotencyKeyReusedError.

    Sells `product` (with `amount` for a ranged one), or the number's product for `amount`, to
    `phone_number` (its operator found from the catalog unless `operator` names it), or what
    `quote` locked. Raises the catalog's errors (400, 404 for a quote not the seller's, 409 for a
    quote expired or used) recording nothing. Takes no lock and reads no balance: whether it
    succeeds is decided by the worker. `phone_number` must already be normalized to E.164
    (`core.fields`). Raises SellerInactiveError, recording nothing, when the seller's user is not
    active."""
    request_fingerprint = fingerprint(
        {
            "phone_number": phone_number,
            "amount": amount,
            "reference": reference,
            **{k: v for k, v in (("product", product), ("operator", operator), ("quote", quote)) if v is not None},
        }
    )
    try:
        if quote is not None:
            with transaction.atomic():
                used = quote_use(seller_id=seller_id, quote_id=quote, msisdn=phone_number)
                return _record(
                    seller_id, used.msisdn, sale_of_quote(used), reference, idempotency_key, request_fingerprint
                )
        sale = sale_for_charge(
            seller_id=seller_id, msisdn=phone_number, amount=amount, product_id=product, operator_id=operator
        )
    except DomainError:
        # A retry of a charge already recorded answers it, whatever the catalog says now.
        if idempotency_key is not None and (
            recorded := Charge.objects.filter(seller_id=seller_id, idempotency_key=idempotency_key).first()
        ):
            return _same_request(recorded, request_fingerprint), False
        raise
    return _record(seller_id, phone_number, sale, reference, idempotency_key, request_fingerprint)


def _record(
    seller_id: int, phone_number: str, sale: Sale, reference: str, idempotency_key: str | None, request_fingerprint: str
) -> tuple[Charge, bool]:
    created_at = timezone.now()
    with connection.cursor() as cursor:
        _RECORD_CHARGE.execute(
            cursor,
            [
                seller_id,
                phone_number,
                sale.price,
                reference,
                idempotency_key,
                request_fingerprint,
                created_at,
                sale.operator_id,
                sale.product_id,
                sale.product_version_id,
                sale.cost,
                sale.destination_amount,
                sale.destination_currency,
                sale.quote_id,
            ],
        )
        allowed, charge_id = cursor.fetchone()
    if not allowed:
        raise SellerInactiveError()
    if charge_id is None:
        existing = Charge.objects.get(seller_id=seller_id, idempotency_key=idempotency_key)
        if sale.quote_id is not None:  # the quote stays unused: this request recorded nothing
            transaction.set_rollback(True)
        return _same_request(existing, request_fingerprint), False
    charge = Charge(
        id=charge_id,
        seller_id=seller_id,
        phone_number=phone_number,
        amount=sale.price,
        reference=reference,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        created_at=created_at,
        operator_id=sale.operator_id,
        product_id=sale.product_id,
        product_version_id=sale.product_version_id,
        quote_id=sale.quote_id,
        cost=sale.cost,
        destination_amount=sale.destination_amount,
        destination_currency=sale.destination_currency,
    )
    events.intents_recorded(seller_id=seller_id)
    logger.info(
        "charge queued",
        extra={"event": "charge.queued", "seller_id": seller_id, "charge_id": charge.pk, "amount": sale.price},
    )
    return charge, True


def _same_request(existing: Charge, request_fingerprint: str) -> Charge:
    """The charge an idempotency key already names: the same request answers it, another is refused."""
    if existing.request_fingerprint != request_fingerprint:
        raise IdempotencyKeyReusedError()
    return existing
