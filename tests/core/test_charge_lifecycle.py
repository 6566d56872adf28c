"""The charge's transition table (ledger/charge_lifecycle.py): every move works from the stage it
leaves and from no other, and a write that skips the lifecycle is refused by the database.

Each charge reaches its stage the way production brings it there (the settle for money, the
lifecycle's fulfilment moves for the rest); each move is then tried in a savepoint rolled back
afterwards, so the ledger the tests end with is the real one, and the audit checks it."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ledger import charge_lifecycle as lifecycle
from ledger.charge_lifecycle import Answer, Reversal
from ledger.models import Charge
from ledger.services.charges import charge_submit
from ledger.services.settlement import settle_seller
from tests.factories import make_admin, make_seller, request_and_approve
from tests.support import assert_ledger_audit

pytestmark = pytest.mark.django_db

PHONE = "+989121234567"
S = lifecycle  # the constants, shorter in the tables below


def _now():
    return timezone.now()


def _settle_move(move):
    def run(charge: Charge) -> int:
        with connection.cursor() as cursor:
            row = (charge.seller_id, charge.pk, 1) if move is lifecycle.reserve else (charge.seller_id, charge.pk)
            return move(cursor, now=_now(), rows=[row])

    return run


# Every move, as its callers make it, on one charge; each answers how many charges it moved.
MOVES = {
    "reserve": _settle_move(lifecycle.reserve),
    "fail_unfunded": _settle_move(lifecycle.fail_unfunded),
    "claim_for_sending": lambda c: len(
        lifecycle.claim_for_sending([c.pk], first_check_after=60, external_id_prefix="test-")
    ),
    "unclaim": lambda c: lifecycle.unclaim([c.pk]),
    "reroute": lambda c: len(lifecycle.reroute([(c.pk, "a", "unavailable", "b", None, None)])),
    "mark_pending": lambda c: lifecycle.mark_pending([(c.pk, "ref-1")]),
    "mark_unknown": lambda c: lifecycle.mark_unknown([c.pk], check_after=1),
    "resend": lambda c: len(lifecycle.resend([c.pk], lease=60)),
    "record_answers": lambda c: len(lifecycle.record_answers([Answer(c.pk, S.SUCCEEDED)])),
    "post": _settle_move(lifecycle.post),
    "release": _settle_move(lifecycle.release),
    "record_reversals": lambda c: len(lifecycle.record_reversals([Reversal(c.pk, "REVERSED")]).sellers),
    "reverse": _settle_move(lifecycle.reverse),
}
R = "reversal recorded"

# (stage, status, outcome) of each place a charge can be. `answered` is a sent charge with the
# provider's answer recorded, waiting for its seller's settle.
PLACES = {
    "queued": (S.QUEUED, "queued", None, None),
    "reserved": (S.RESERVED, "queued", None, None),
    "submitted": (S.SUBMITTED, "queued", None, None),
    "unknown": (S.UNKNOWN, "queued", None, None),
    "answered succeeded": (S.SUBMITTED, "queued", S.SUCCEEDED, None),
    "answered failed": (S.UNKNOWN, "queued", S.FAILED, None),
    "done succeeded": (S.DONE, S.SUCCEEDED, S.SUCCEEDED, None),
    "done released": (S.DONE, S.FAILED, S.FAILED, None),
    "done unfunded": (S.DONE, S.FAILED, None, None),
    # A succeeded charge the provider reversed: recorded, waiting for the settle's refund; refunded.
    "reversal waiting": (S.DONE, S.SUCCEEDED, S.SUCCEEDED, R),
    "done reversed": (S.DONE, S.REVERSED, S.SUCCEEDED, R),
}

# The allowed moves: (move, from) -> where the charge is afterwards. Every other pair moves nothing.
ALLOWED = {
    ("reserve", "queued"): (S.RESERVED, "queued", None, None),
    ("fail_unfunded", "queued"): (S.DONE, S.FAILED, None, None),
    ("claim_for_sending", "reserved"): (S.SUBMITTED, "queued", None, None),
    ("unclaim", "submitted"): (S.RESERVED, "queued", None, None),
    # Refused before processing: to the next provider (never from unknown, never once answered).
    ("reroute", "reserved"): (S.RESERVED, "queued", None, None),
    ("reroute", "submitted"): (S.RESERVED, "queued", None, None),
    ("mark_pending", "submitted"): (S.SUBMITTED, "queued", None, None),  # notes the provider's reference
    ("mark_unknown", "submitted"): (S.UNKNOWN, "queued", None, None),
    ("resend", "submitted"): (S.SUBMITTED, "queued", None, None),  # the provider has no record: sent again
    ("resend", "unknown"): (S.SUBMITTED, "queued", None, None),
    ("record_answers", "submitted"): (S.SUBMITTED, "queued", S.SUCCEEDED, None),
    ("record_answers", "unknown"): (S.UNKNOWN, "queued", S.SUCCEEDED, None),
    ("post", "answered succeeded"): (S.DONE, S.SUCCEEDED, S.SUCCEEDED, None),
    ("release", "answered failed"): (S.DONE, S.FAILED, S.FAILED, None),
    # A reversal: of a charge still held, nothing was delivered (a failed answer, released by the
    # settle); of a succeeded one, a refund is due. An answered success not posted yet waits.
    ("record_reversals", "submitted"): (S.SUBMITTED, "queued", S.FAILED, None),
    ("record_reversals", "unknown"): (S.UNKNOWN, "queued", S.FAILED, None),
    ("record_reversals", "done succeeded"): (S.DONE, S.SUCCEEDED, S.SUCCEEDED, R),
    ("reverse", "reversal waiting"): (S.DONE, S.REVERSED, S.SUCCEEDED, R),
}


def _where(charge: Charge) -> tuple:
    charge.refresh_from_db()
    return (charge.stage, charge.status, charge.outcome, R if charge.reversal_reason else None)


def _charges_in_every_place() -> dict[str, Charge]:
    """One charge in each place of PLACES, all of one funded seller."""
    seller = make_seller()
    request_and_approve(seller, 10_000, make_admin())
    settle_seller(seller_id=seller.pk)

    def submit(amount: int) -> Charge:
        return charge_submit(seller_id=seller.pk, phone_number=PHONE, amount=amount)[0]

    c = {place: submit(1_000) for place in PLACES if place not in ("queued", "done unfunded")}
    c["done unfunded"] = submit(1_000_000)
    settle_seller(seller_id=seller.pk)  # reserves them all but the one the balance does not cover
    sent = [c[p] for p in c if p not in ("reserved", "done unfunded")]
    assert len(lifecycle.claim_for_sending([x.pk for x in sent], first_check_after=60, external_id_prefix="t-")) == 8
    assert lifecycle.mark_unknown([c["unknown"].pk, c["answered failed"].pk], check_after=60) == 2
    finals = [Answer(c["done succeeded"].pk, S.SUCCEEDED), Answer(c["done released"].pk, S.FAILED, "invalid_number")]
    finals += [Answer(c["reversal waiting"].pk, S.SUCCEEDED), Answer(c["done reversed"].pk, S.SUCCEEDED)]
    assert len(lifecycle.record_answers(finals)) == 4
    settle_seller(seller_id=seller.pk)  # posts three, releases one
    assert len(lifecycle.record_reversals([Reversal(c["done reversed"].pk, "REVERSED")]).sellers) == 1
    settle_seller(seller_id=seller.pk)  # the refund
    assert len(lifecycle.record_reversals([Reversal(c["reversal waiting"].pk, "REVERSED")]).sellers) == 1
    waiting = [
        Answer(c["answered succeeded"].pk, S.SUCCEEDED),
        Answer(c["answered failed"].pk, S.FAILED, "operator_declined"),
    ]
    assert len(lifecycle.record_answers(waiting)) == 2  # left for the next settle
    c["queued"] = submit(1_000)
    assert {place: _where(charge) for place, charge in c.items()} == PLACES
    return c


def test_every_move_of_the_transition_table_works_from_its_stage_and_from_no_other():
    charges = _charges_in_every_place()

    seen = {}
    for move, run in MOVES.items():
        for place, charge in charges.items():
            savepoint = transaction.savepoint()
            moved = run(charge)
            seen[(move, place)] = (moved, _where(charge))
            transaction.savepoint_rollback(savepoint)

    expected = {
        (move, place): (1, ALLOWED[(move, place)]) if (move, place) in ALLOWED else (0, PLACES[place])
        for move in MOVES
        for place in PLACES
    }
    assert seen == expected
    assert {place: _where(charge) for place, charge in charges.items()} == PLACES
    assert_ledger_audit(charges["queued"].seller_id)


# Writes that skip the lifecycle, each from a place of the table, and the constraint refusing it.
REFUSED_BY_THE_DATABASE = [
    ("queued", "stage = 'reserved'", "charge_status_consistent"),  # no hold's balance_after, no reserved_at
    ("queued", "status = 'failed', settled_at = now(), failure_code = 'x'", "charge_status_consistent"),
    ("queued", "outcome = 'succeeded'", "charge_outcome_consistent"),  # answered before it was sent
    ("reserved", "outcome = 'failed', outcome_code = 'x'", "charge_outcome_consistent"),
    ("reserved", "stage = 'done'", "charge_status_consistent"),  # final, but still `queued` to clients
    # Succeeded with no answer at all (a CHECK passes on NULL: the constraint spells it out).
    ("reserved", "status = 'succeeded', stage = 'done', settled_at = now()", "charge_succeeded_by_provider"),
    ("submitted", "stage = 'queued'", "charge_status_consistent"),  # back to queued: the hold would be lost
    ("answered failed", "outcome_code = NULL", "charge_outcome_consistent"),
    ("answered failed", "status = 'succeeded', stage = 'done', settled_at = now()", "charge_succeeded_by_provider"),
    ("done unfunded", "stage = 'reserved'", "charge_status_consistent"),
    ("done released", "stage = 'unknown'", "charge_status_consistent"),  # final, then open again
    ("done succeeded", "status = 'queued'", "charge_status_consistent"),
    # Final with the provider's success, yet failed to clients.
    ("done released", "outcome = 'succeeded', outcome_code = NULL", "charge_succeeded_by_provider"),
    # A reversal only of a delivered top-up, and `reversed` only once it is applied.
    ("done released", "reversal_reason = 'x', reversal_recorded_at = now()", "charge_reversal_consistent"),
    ("answered succeeded", "status = 'reversed', reversed_at = now()", "charge_reversal_consistent"),
    ("done succeeded", "status = 'reversed', reversed_at = now()", "charge_reversal_consistent"),
    ("reversal waiting", "status = 'reversed'", "charge_reversal_consistent"),  # no reversed_at
    ("done reversed", "status = 'succeeded'", "charge_reversal_consistent"),  # the refund stays
    ("done reversed", "outcome = 'failed', outcome_code = 'x'", "charge_reversal_consistent"),
]


def test_a_write_that_skips_the_lifecycle_is_refused_by_the_database():
    charges = _charges_in_every_place()

    for place, assignments, constraint in REFUSED_BY_THE_DATABASE:
        savepoint = transaction.savepoint()
        with pytest.raises(IntegrityError, match=constraint), connection.cursor() as cursor:  # noqa: PT012
            cursor.execute(f"UPDATE ledger_charge SET {assignments} WHERE id = %s", [charges[place].pk])
        transaction.savepoint_rollback(savepoint)
    assert {place: _where(charge) for place, charge in charges.items()} == PLACES
    assert_ledger_audit(charges["queued"].seller_id)
