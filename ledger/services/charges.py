import logging
from functools import cache

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from core.models import Seller
from core.roles import STAFF_ROLES
from ledger import events
from ledger.errors import SellerInactiveError
from ledger.models import Charge
from ledger.prepared import PreparedStatement
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
    charge = _new_charge(seller.pk, phone_number, amount, reference, idempotency_key)

    def create() -> Charge:
        if not _insert(charge):
            raise SellerInactiveError()  # deactivated since the check above
        return charge

    charge, created = create_once(
        model=Charge, seller_id=seller.pk, key=idempotency_key, fingerprint_=charge.request_fingerprint, create=create
    )
    if created:
        _recorded(charge)
    return charge, created


def charge_record_if_new(
    *,
    user_id: int,
    seller_id: int,
    phone_number: str,
    amount: int,
    reference: str = "",
    idempotency_key: str | None = None,
) -> Charge | None:
    """The charge POST's fast path (`ledger/api/charge_fast_path.py`): `charge_submit` for the
    common case, in one autocommitted statement and no other database round trip.

    Records the charge only if `user_id` is the seller's user, is active and acts as the seller
    (not as staff: `core.roles.role_of`), and `idempotency_key` (if any) names no charge yet.
    Returns None when it recorded nothing, without saying why: the caller then takes
    `charge_submit`, which answers an existing key's original charge, a reused key's conflict or
    an inactive seller. Must not run inside a transaction: the wake-up is sent as soon as the
    statement returns, i.e. after its commit."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of the `connection` proxy costs a lookup
    if db.in_atomic_block:
        raise RuntimeError("charge_record_if_new autocommits; call charge_submit inside a transaction")
    given = {
        "seller_id": seller_id,
        "phone_number": phone_number,
        "amount": amount,
        "reference": reference,
        "idempotency_key": idempotency_key,
        "request_fingerprint": _fingerprint(phone_number, amount, reference),
    }
    values = _fast_row(given)
    prepared = [f.get_db_prep_save(v, db) if f.attname in _PER_CHARGE else v for f, v in values]
    with db.cursor() as cursor:
        roles = [role.value for role in STAFF_ROLES]
        _fast_insert().execute(cursor, [*prepared, seller_id, user_id, roles])
        row = cursor.fetchone()
    if row is None:
        return None
    charge = Charge.from_db(db.alias, _FIELD_NAMES, [row[0], *(value for _, value in values)])
    _recorded(charge)
    return charge


def _fingerprint(phone_number: str, amount: int, reference: str) -> str:
    return fingerprint({"phone_number": phone_number, "amount": amount, "reference": reference})


# The fast path builds its row without a model instance: constructing one and preparing each of
# its 13 fields through the ORM cost ~35 µs per charge, a twentieth of the web's CPU for it. Every
# field it does not set is at its default, prepared for the database once (`_fast_defaults`);
# the ones below are computed per charge and prepared as the ORM prepares them.
_GIVEN = ("seller_id", "phone_number", "amount", "reference", "idempotency_key", "request_fingerprint")
_PER_CHARGE = frozenset({*_GIVEN, "created_at"})
# Model.from_db's order: the id, then the inserted fields (the id is Charge's first field).
_FIELD_NAMES = [f.attname for f in Charge._meta.concrete_fields]
assert Charge._meta.concrete_fields[0].primary_key


@cache
def _fast_defaults() -> list:
    defaults = []
    for field in _insert_fields():
        if field.attname in _PER_CHARGE:
            defaults.append(None)
        elif (
            (field.has_default() and callable(field.default))
            or getattr(field, "auto_now", False)
            or getattr(field, "auto_now_add", False)
        ):
            raise ImproperlyConfigured(f"Charge.{field.name} changes per charge: add it to _PER_CHARGE")
        else:
            defaults.append(field.get_db_prep_save(field.get_default(), connection))
    return defaults


def _fast_row(given: dict) -> list[tuple]:
    """(field, value) for each inserted column, in `_insert_fields` order."""
    now = timezone.now()  # created_at (auto_now_add), as its pre_save would set it
    return [
        (field, given[field.attname] if field.attname in given else now if field.attname == "created_at" else default)
        for field, default in zip(_insert_fields(), _fast_defaults(), strict=True)
    ]


def _new_charge(seller_id: int, phone_number: str, amount: int, reference: str, key: str | None) -> Charge:
    fp = _fingerprint(phone_number, amount, reference)
    return Charge(
        seller_id=seller_id,
        phone_number=phone_number,
        amount=amount,
        reference=reference,
        idempotency_key=key,
        request_fingerprint=fp,
    )


@cache
def _insert_fields() -> list:
    return [f for f in Charge._meta.concrete_fields if not f.primary_key]


def _insert_sql(*, as_user: bool, placeholders: list[str]) -> str:
    """INSERT ... SELECT guarded by the seller's user being active, so the check and the insert
    are one statement (no window in which a deactivation slips between them). `as_user` (the fast
    path, which has not loaded the user) also checks that the given user is the seller's and acts
    as a seller, and leaves an already used idempotency key alone instead of failing."""
    quote = connection.ops.quote_name
    fields = _insert_fields()
    user_model = Seller.user.field.related_model
    values, guard_params = placeholders[: len(fields)], placeholders[len(fields) :]
    guard = f"s.id = {guard_params[0]} AND u.is_active"
    if as_user:
        groups = user_model.groups.through._meta.db_table
        guard += (
            f" AND u.id = {guard_params[1]} AND NOT u.is_superuser AND NOT EXISTS ("
            f"SELECT 1 FROM {groups} ug JOIN auth_group g ON g.id = ug.group_id "
            f"WHERE ug.user_id = u.id AND g.name = ANY({guard_params[2]}))"
        )
    on_conflict = " ON CONFLICT (seller_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
    return (
        f"INSERT INTO {Charge._meta.db_table} ({', '.join(quote(f.column) for f in fields)}) "
        f"SELECT {', '.join(values)} WHERE EXISTS ("
        f"SELECT 1 FROM {Seller._meta.db_table} s JOIN {user_model._meta.db_table} u ON u.id = s.user_id "
        f"WHERE {guard}){on_conflict if as_user else ''} RETURNING id"
    )


@cache
def _submit_insert_sql() -> str:
    return _insert_sql(as_user=False, placeholders=["%s"] * (len(_insert_fields()) + 1))


@cache
def _fast_insert() -> PreparedStatement:
    """The fast path's guarded insert, prepared once per database session (ledger/prepared.py)."""
    user_model = Seller.user.field.related_model
    types = [f.db_type(connection) for f in _insert_fields()]
    types += [Seller._meta.pk.rel_db_type(connection), user_model._meta.pk.rel_db_type(connection), "varchar[]"]
    sql = _insert_sql(as_user=True, placeholders=[f"${n}" for n in range(1, len(types) + 1)])
    return PreparedStatement("ledger_charge_fast_insert", sql, types)


def _insert(charge: Charge) -> bool:
    """Insert `charge` as the ORM would (each field's pre_save and database preparation) and set
    its id. False when nothing was inserted."""
    values = [f.get_db_prep_save(f.pre_save(charge, True), connection) for f in _insert_fields()]
    with connection.cursor() as cursor:
        cursor.execute(_submit_insert_sql(), [*values, charge.seller_id])
        row = cursor.fetchone()
    if row is None:
        return False
    charge.pk = row[0]
    charge._state.adding = False
    charge._state.db = connection.alias
    return True


def _recorded(charge: Charge) -> None:
    events.intents_recorded(seller_id=charge.seller_id)
    logger.info(
        "charge queued",
        extra={
            "event": "charge.queued",
            "seller_id": charge.seller_id,
            "charge_id": charge.pk,
            "amount": charge.amount,
        },
    )
