"""A charge's lifecycle: its stages, and every move between them. Nothing else moves a charge.

    POST /charges/, import
            |
            v                      claim_for_sending
         queued --reserve--> reserved ------------> submitted --mark_unknown--> unknown
            |                    ^                   | ^   |                     |  |
            |                    +--unclaim/reroute--+ |   |                     |  |
            |                                          +---|------resend---------+  |
            |                                              | record_answers         | record_answers
            | fail_unfunded                                v                        v
            |                                  answered (`outcome` recorded, stage unchanged)
            v                                          |                      |
    done, failed (insufficient_funds)              post |                      | release
                                                       v                      v
                                              done, succeeded          done, failed (outcome_code)
                                                       |
                                                       | record_reversals (the provider reversed it: `reversal_reason`)
                                                       v
                                     reversal waiting (`reversal_reason` recorded, still succeeded)
                                                       |
                                                       | reverse (settle: a `refund` entry gives the debit back)
                                                       v
                                               done, reversed

  `reroute` (submitted with no answer, or reserved -> reserved at the next provider): only after a
  refusal before processing, never from `unknown`.

- `reserve`, `fail_unfunded`, `post`, `release`, `reverse`: the settle (ledger/posting.py), under the
  seller's account lock, in the transaction that writes the entries and balances they imply.
  Set-based prepared statements (a batch is a handful of statements, whatever its size).
- `claim_for_sending`, `unclaim`, `reroute`, `mark_pending`, `mark_unknown`, `resend`, `record_answers`,
  `record_reversals`: the
  fulfilment workers, the provider's callback and the reconciler (ledger/fulfilment/), each
  statement committed on its own: a claim (or a resend) must be committed before its request leaves.
Every move is a guarded UPDATE that names the stage it leaves, so a charge anywhere else is left
alone: a function answers what it moved, and the caller decides whether less than it asked is a
conflict (the settle rolls back) or a duplicate (a redelivered task sends nothing twice). The
database refuses a row whose columns disagree with its stage (`charge_status_consistent`,
`charge_outcome_consistent`, `charge_succeeded_by_provider`).

`status`, what clients read, follows from `stage` and `outcome`: `queued` until the charge is
`done`, then `succeeded` when the provider said so, else `failed`; a succeeded charge the provider
later reversed ends `reversed` (its debit stands, a `refund` entry gives it back). It is written
here only, by the moves to `done` and `reverse`, and the constraints above hold it to that. It is stored, not computed: the
contract, the admin and the batch results' index read it (docs/architecture.md, "Fulfilment: a
charge's lifecycle").

The statements are built once at import from the constants below; reads elsewhere (the settle's
queues, the reconciler, the audit, the selectors) interpolate the same constants and predicates."""

from dataclasses import dataclass

from django.db import connection

from core.db.prepared import PreparedStatement, array_literal
from ledger.models import Charge

Stage = Charge.Stage
QUEUED, RESERVED, SUBMITTED, UNKNOWN, DONE = Stage.QUEUED, Stage.RESERVED, Stage.SUBMITTED, Stage.UNKNOWN, Stage.DONE
OPEN = Charge.OPEN_STAGES  # the charge holds credit
SENT = (SUBMITTED, UNKNOWN)  # the request may have reached the provider: only its answer settles it

# The provider's answer (`outcome`) and what clients read (`status`) share these values.
SUCCEEDED, FAILED = Charge.Status.SUCCEEDED, Charge.Status.FAILED
REVERSED = Charge.Status.REVERSED  # a status only: the outcome of a reversed charge stays succeeded
POSTED = Charge.POSTED_STATUSES  # the hold was posted: the debit stands (a reversal adds a refund)
INSUFFICIENT_FUNDS = Charge.FailureCode.INSUFFICIENT_FUNDS.value
PROVIDER_REJECTED = Charge.FailureCode.PROVIDER_REJECTED.value  # a failure the provider gave no reason for


def _sql_list(values) -> str:
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


# Predicates for reads. The first two are the conditions of the settle's partial indexes
# (charge_queued_idx, charge_answered_idx): a read must spell them alike for the planner to use them.
QUEUED_SQL = f"stage = '{QUEUED}'"  # waiting for the settle to reserve it
ANSWERED_SQL = f"outcome IS NOT NULL AND stage <> '{DONE}'"  # an answer waiting for the settle to apply it
OPEN_SQL = _sql_list(OPEN)  # `stage IN ...`: charge_open_idx
SENT_SQL = _sql_list(SENT)
POSTED_SQL = _sql_list(POSTED)  # `status IN ...`: charge_posted_idx
# A reversal recorded and not applied yet: the condition of charge_reversal_waiting_idx.
REVERSAL_WAITING_SQL = f"status = '{SUCCEEDED}' AND reversal_reason IS NOT NULL"


def stage_in(*stages: str) -> str:
    """`stage = ANY(...)` for the fulfilment's moves, which find their charges by id: the stages
    as a value (an InitPlan), never as constants. A constant open stage implies charge_open_idx's
    condition, and the planner then walks that whole partial index, with the ids as a mere filter,
    whenever its statistics say the index is small: they say so after nearly every ANALYZE
    (charges leave it within seconds), and still say so once an import has put a million charges
    in it, when every claim became a walk of a million index entries. As a value, only the
    primary key can find the charges: an exact lookup whatever the statistics."""
    return "stage = ANY(ARRAY[" + ", ".join(f"(SELECT '{stage}'::varchar)" for stage in stages) + "])"


@dataclass(frozen=True)
class Answer:
    """A provider's final answer about one charge, from any source (a send, a callback, a lookup)."""

    charge_id: int
    outcome: str  # SUCCEEDED | FAILED
    failure_code: str | None = None
    provider_reference: str | None = None
    # What the provider reports it delivered (a success), in the destination currency's smallest
    # unit, and that currency when it names it (else the one asked for).
    delivered_amount: int | None = None
    delivered_currency: str | None = None


# -- The settle's moves. `rows` are tuples, one column per array of the statement's `unnest`. Each
# names the row by seller and id, though the id alone would do, so that every index the planner may
# pick is an exact lookup: with the id alone it may take a partial index of waiting rows whenever
# its statistics say that index is tiny (they are settled within a second, so at any ANALYZE it
# is), and walk all of it once per row; between vacuums that index also holds every row settled
# since the last one, so each settle would read more than the one before.

_RESERVE = PreparedStatement(
    "ledger_settle_reserve_charges",
    f"""UPDATE ledger_charge AS c SET stage = '{RESERVED}', reserved_at = $1, balance_after = u.balance_after
    FROM unnest($2, $3, $4) AS u(seller_id, id, balance_after)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.stage = '{QUEUED}'""",
    ["timestamptz", "bigint[]", "bigint[]", "bigint[]"],
)
_FAIL_UNFUNDED = PreparedStatement(
    "ledger_settle_fail_charges_by_seller",
    f"""UPDATE ledger_charge AS c SET status = '{FAILED}', stage = '{DONE}', settled_at = $1, failure_code = $2
    FROM unnest($3, $4) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.stage = '{QUEUED}'""",
    ["timestamptz", "text", "bigint[]", "bigint[]"],
)
_POST = PreparedStatement(
    "ledger_settle_post_charges",
    f"""UPDATE ledger_charge AS c SET status = '{SUCCEEDED}', stage = '{DONE}', settled_at = $1
    FROM unnest($2, $3) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.outcome = '{SUCCEEDED}' AND c.stage <> '{DONE}'""",
    ["timestamptz", "bigint[]", "bigint[]"],
)
_RELEASE = PreparedStatement(
    "ledger_settle_release_charges",
    f"""UPDATE ledger_charge AS c SET status = '{FAILED}', stage = '{DONE}', settled_at = $1,
        failure_code = c.outcome_code, balance_after = NULL
    FROM unnest($2, $3) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.outcome = '{FAILED}' AND c.stage <> '{DONE}'""",
    ["timestamptz", "bigint[]", "bigint[]"],
)


def reserve(cursor, *, now, rows: list[tuple[int, int, int]]) -> int:
    """queued -> reserved: the settle placed the hold. rows: (seller, charge, balance after the hold)."""
    return _execute(cursor, _RESERVE, [now], rows)


def fail_unfunded(cursor, *, now, rows: list[tuple[int, int]]) -> int:
    """queued -> done, failed `insufficient_funds`: the balance did not cover it; never sent.
    rows: (seller, charge)."""
    return _execute(cursor, _FAIL_UNFUNDED, [now, INSUFFICIENT_FUNDS], rows)


def post(cursor, *, now, rows: list[tuple[int, int]]) -> int:
    """answered succeeded -> done, succeeded: the hold becomes the charge's debit. rows: (seller, charge)."""
    return _execute(cursor, _POST, [now], rows)


def release(cursor, *, now, rows: list[tuple[int, int]]) -> int:
    """answered failed -> done, failed with the provider's code: the hold is given back (the
    settle writes its `release` entry). rows: (seller, charge)."""
    return _execute(cursor, _RELEASE, [now], rows)


_REVERSE = PreparedStatement(
    "ledger_settle_reverse_charges",
    f"""UPDATE ledger_charge AS c SET status = '{REVERSED}', reversed_at = $1
    FROM unnest($2, $3) AS u(seller_id, id)
    WHERE c.seller_id = u.seller_id AND c.id = u.id AND c.status = '{SUCCEEDED}' AND c.reversal_reason IS NOT NULL""",
    ["timestamptz", "bigint[]", "bigint[]"],
)


def reverse(cursor, *, now, rows: list[tuple[int, int]]) -> int:
    """done, succeeded with a reversal recorded -> done, reversed: the settle gives the debit back
    (its `refund` entry). rows: (seller, charge)."""
    return _execute(cursor, _REVERSE, [now], rows)


def _execute(cursor, statement: PreparedStatement, params: list, rows: list[tuple]) -> int:
    if not rows:
        return 0
    statement.execute(cursor, [*params, *(array_literal(column) for column in zip(*rows, strict=True))])
    return cursor.rowcount


# -- The fulfilment's moves, each committed on its own (outside any transaction it autocommits).
# Times are `clock_timestamp()`, the time of the statement, whatever transaction it runs in.


# What we ask the provider for a charge (ledger.fulfilment.identity.Asked): the top-up's amount is
# its destination amount (the amount itself on a charge recorded before the catalog), and the
# provider's id of its product.
# The product is the one routing chose at the charge's provider (`served_by`), else its own; the
# provider is the one it is sent to ("" on a charge sent before routing: the default one).
ASKED_COLUMNS = """id, external_id, phone_number, coalesce(destination_amount, amount), created_at,
    (SELECT p.provider_product_id FROM catalog_product p WHERE p.id = coalesce(served_by_id, product_id)),
    provider"""


# The fulfilment's statements run once per task, a charge or a few at a time when traffic is light,
# so they are prepared like the settle's: planning them cost PostgreSQL more than running them.
_CLAIM = PreparedStatement(
    "ledger_fulfil_claim",
    f"""UPDATE ledger_charge AS c SET stage = '{SUBMITTED}', submitted_at = clock_timestamp(),
           next_check_at = clock_timestamp() + make_interval(secs => $1),
           external_id = coalesce(c.external_id, $2 || c.id
                                  || CASE WHEN c.route_moves > 0 THEN '-' || (c.route_moves + 1) ELSE '' END),
           sends = c.sends + 1,
           provider = $3,
           served_by_id = CASE WHEN c.provider = '' THEN r.served ELSE c.served_by_id END,
           cost = CASE WHEN c.provider = '' THEN coalesce(r.route_cost, c.cost) ELSE c.cost END
     FROM unnest($4, $5, $6) AS r(charge, served, route_cost)
     WHERE c.id = r.charge AND c.{stage_in(RESERVED)} AND c.provider IN ('', $3)
     RETURNING {ASKED_COLUMNS.replace("id, external_id", "c.id, c.external_id", 1)}""",
    ["float8", "text", "varchar", "bigint[]", "bigint[]", "bigint[]"],
)


def claim_for_sending(
    charge_ids: list[int],
    *,
    first_check_after: float,
    external_id_prefix: str,
    provider: str = "",
    routes: dict[int, tuple[int | None, int | None]] | None = None,
) -> list[tuple]:
    """reserved -> submitted, before any request leaves, to `provider`; fixes the external id of
    each one sent for the first time there (a charge sent again keeps its own; one routing moved
    gets a new one, `-<n>` after the id, which no provider saw) and schedules its first lookup.
    A charge claimed for the first time takes its provider, and from `routes` (charge ->
    (that provider's product, its cost)) the product and cost of its route; a charge already
    at another provider is not claimed. Only charges still `reserved` are claimed: a redelivered
    task, or a second one for the same charges, sends nothing twice. Answers the `ASKED_COLUMNS`
    of the claimed ones, by id."""
    if not charge_ids:
        return []
    routes = routes or {}
    served = [routes.get(charge, (None, None)) for charge in charge_ids]
    with connection.cursor() as cursor:
        _CLAIM.execute(
            cursor,
            [
                first_check_after,
                external_id_prefix,
                provider,
                array_literal(charge_ids),
                array_literal([s for s, _ in served]),
                array_literal([c for _, c in served]),
            ],
        )
        return sorted(cursor.fetchall())


def reroute(moves: list[tuple[int, str, str, str, int | None, int | None]]) -> list[int]:
    """reserved or submitted (no answer) -> reserved, at the next provider of the charge's routes:
    its provider refused it *before processing* (insufficient balance, the product withdrawn
    there, 503/429, its breaker open; ledger/fulfilment/routing.py decides), so the charge is
    free to go elsewhere. It leaves its external id behind (recorded with the refusal in
    ChargeRouteMove) and is claimed again under a new one. Never called after an unknown outcome.
    moves: (charge, the provider that refused, reason, next provider, its product, its cost).
    Answers the charges moved."""
    if not moves:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH moved AS (
                 UPDATE ledger_charge AS c SET stage = '{RESERVED}', provider = m.next_provider,
                        served_by_id = m.served, cost = coalesce(m.route_cost, c.cost), external_id = NULL,
                        route_moves = c.route_moves + 1, submitted_at = NULL, next_check_at = NULL,
                        provider_reference = NULL
                   FROM (SELECT u.*, old.external_id AS old_external_id
                           FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[])
                                AS u(charge, refused_by, reason, next_provider, served, route_cost)
                           JOIN ledger_charge old ON old.id = u.charge) AS m
                  WHERE c.id = m.charge AND c.{stage_in(RESERVED, SUBMITTED)} AND c.outcome IS NULL
                    AND c.provider IN ('', m.refused_by)
              RETURNING c.id, m.refused_by, m.old_external_id, m.reason, m.next_provider)
             INSERT INTO ledger_chargeroutemove (charge_id, provider, external_id, reason, moved_to, at)
             SELECT id, refused_by, old_external_id, reason, next_provider, clock_timestamp() FROM moved
             RETURNING charge_id""",
            [list(column) for column in zip(*moves, strict=True)],
        )
        return sorted(row[0] for row in cursor.fetchall())


def unclaim(charge_ids: list[int]) -> int:
    """submitted -> reserved: the provider certainly did not process these (429, refused, down);
    they are sent again, under the same external id."""
    if not charge_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE ledger_charge SET stage = '{RESERVED}', submitted_at = NULL, next_check_at = NULL
             WHERE id = ANY(%s) AND {stage_in(SUBMITTED)} AND outcome IS NULL""",
            [charge_ids],
        )
        return cursor.rowcount


def mark_pending(pending: list[tuple[int, str]]) -> int:
    """Stays submitted: the provider took it and will answer later (a callback, or a lookup).
    Notes its reference. pending: (charge, provider reference or "")."""
    if not pending:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE ledger_charge AS c SET provider_reference = nullif(u.reference, '')
             FROM unnest(%s::bigint[], %s::text[]) AS u(id, reference)
             WHERE c.id = u.id AND c.{stage_in(SUBMITTED)} AND c.outcome IS NULL""",
            [[c for c, _ in pending], [r for _, r in pending]],
        )
        return cursor.rowcount


def mark_unknown(charge_ids: list[int], *, check_after: float) -> int:
    """submitted -> unknown: the answer was lost (a timeout, a reset, a 5xx after sending), or it
    was about another transaction. Never released blindly: the reconciler looks it up
    `check_after` seconds from now, and sends it again under its own external id while the
    provider has no record of it (`resend`)."""
    if not charge_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE ledger_charge SET stage = '{UNKNOWN}',
                   next_check_at = clock_timestamp() + make_interval(secs => %s)
             WHERE id = ANY(%s) AND {stage_in(SUBMITTED)} AND outcome IS NULL""",
            [check_after, charge_ids],
        )
        return cursor.rowcount


def resend(charge_ids: list[int], *, lease: float) -> list[tuple]:
    """submitted or unknown -> submitted: the provider has no record of these (its lookup found
    nothing), so each is sent again now under its own external id, which the provider dedupes by:
    never a second top-up, never a new identity. Its next check waits `lease` seconds, longer than
    the request can take, so a second reconciler leaves it alone meanwhile. Only charges still
    without an answer are taken. Answers the `ASKED_COLUMNS` of those taken, by id."""
    if not charge_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE ledger_charge SET stage = '{SUBMITTED}', sends = sends + 1,
                   next_check_at = clock_timestamp() + make_interval(secs => %s)
             WHERE id = ANY(%s) AND {stage_in(*SENT)} AND outcome IS NULL
             RETURNING {ASKED_COLUMNS}""",
            [lease, list(charge_ids)],
        )
        return sorted(cursor.fetchall())


_RECORD_ANSWERS = PreparedStatement(
    "ledger_fulfil_record_answers",
    f"""UPDATE ledger_charge AS c SET outcome = u.outcome, outcome_code = nullif(u.code, ''),
           provider_reference = coalesce(nullif(u.reference, ''), c.provider_reference),
           delivered_amount = u.delivered,
           delivered_currency = CASE WHEN u.delivered IS NOT NULL
                                     THEN coalesce(nullif(u.currency, ''), c.destination_currency) END,
           outcome_at = clock_timestamp(), next_check_at = NULL
     FROM unnest($1, $2, $3, $4, $5, $6) AS u(id, outcome, code, reference, delivered, currency)
     WHERE c.id = u.id AND c.outcome IS NULL AND c.{stage_in(*SENT)}
     RETURNING c.seller_id""",
    ["bigint[]", "text[]", "text[]", "text[]", "bigint[]", "text[]"],
)


def record_answers(answers: list[Answer]) -> list[int]:
    """submitted or unknown -> answered: the provider's final word, recorded as an intent on
    charges that have none yet (the first answer wins; a duplicate or late one changes nothing).
    No money moves: the seller's settle posts or releases it. Answers the sellers of the charges
    it recorded, one per charge."""
    if not answers:
        return []
    with connection.cursor() as cursor:
        _RECORD_ANSWERS.execute(
            cursor,
            [
                array_literal([a.charge_id for a in answers]),
                [a.outcome for a in answers],
                [(a.failure_code or PROVIDER_REJECTED) if a.outcome == FAILED else "" for a in answers],
                [a.provider_reference or "" for a in answers],
                array_literal([a.delivered_amount if a.outcome == SUCCEEDED else None for a in answers]),
                [a.delivered_currency or "" for a in answers],
            ],
        )
        return [row[0] for row in cursor.fetchall()]


@dataclass(frozen=True)
class Reversal:
    """The provider reversed (refunded) a top-up it had completed: `reason` in its own words."""

    charge_id: int
    reason: str
    provider_reference: str | None = None


@dataclass(frozen=True)
class ReversalsRecorded:
    sellers: list[int]  # one per charge whose reversal or failure was recorded
    not_posted_yet: list[int]  # answered succeeded, not posted yet: ask again once it is


def record_reversals(reversals: list[Reversal]) -> ReversalsRecorded:
    """The provider's reversal of a top-up, from a callback or a lookup (the reconciler, the close):
    - a charge it succeeded, posted: the reversal is recorded (`reversal_reason`) as an intent, once
      (a second one changes nothing); the seller's settle gives the debit back (`reverse`);
    - a charge still held without an answer: nothing was delivered, so it is recorded as a failed
      answer (`provider_rejected`), and the settle releases its hold as any failure's;
    - a charge answered succeeded but not posted yet is left for now (`not_posted_yet`): the
      caller asks again (a callback answers 503, which the provider retries).
    Nothing else is touched: a failed or reversed charge stays as it is."""
    if not reversals:
        return ReversalsRecorded([], [])
    ids = [r.charge_id for r in reversals]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE ledger_charge AS c SET reversal_reason = u.reason, reversal_recorded_at = clock_timestamp()
             FROM unnest(%s::bigint[], %s::text[]) AS u(id, reason)
             WHERE c.id = u.id AND c.status = '{SUCCEEDED}' AND c.reversal_reason IS NULL
             RETURNING c.seller_id""",
            [ids, [r.reason[:64] for r in reversals]],
        )
        sellers = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            f"SELECT id FROM ledger_charge WHERE id = ANY(%s) AND outcome = '{SUCCEEDED}' AND stage <> '{DONE}'",
            [ids],
        )
        not_posted = sorted(row[0] for row in cursor.fetchall())
    held = [
        Answer(r.charge_id, FAILED, PROVIDER_REJECTED, r.provider_reference)
        for r in reversals
        if r.charge_id not in not_posted
    ]
    return ReversalsRecorded(sellers + record_answers(held), not_posted)
