"""The only code that writes events, always inside the transaction of the change they describe.

Sequence: each seller's events are numbered from `SellerFeed.last_seq`, bumped by the same
statement that inserts the events. That row lock is the last lock any transaction here takes and
is held to commit, so a seller's events commit in `seq` order and no lock-order cycle is possible
(the settle holds the account, deposit and charge rows before it; everything else holds at most
the row it changed). For the settle the counter costs nothing extra: it is a CTE of the one
statement that writes the whole batch's events.

After commit, `settings.NOTIFICATIONS_EVENTS_RECORDED` (by default the webhook fan-out's enqueue)
is called with the sellers that got events; a lost call is made up by the periodic sweep."""

import json
from functools import cache, partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from ledger.prepared import PreparedStatement, array_literal
from notifications.models import Event

# $1 time; $2-$8 one row per applied intent, in the settle's order: seller, type, charge, deposit,
# amount, balance after, failure code; $9-$11 one row per changed seller: seller, balance before
# and after the batch (for `balance.low`, written when the batch crosses the seller's threshold).
_INSERT_SETTLED_EVENTS = PreparedStatement(
    "notifications_insert_settled_events",
    """WITH candidate AS (
        SELECT u.ord, u.seller_id, u.type, jsonb_strip_nulls(jsonb_build_object(
            'charge_id', u.charge_id, 'deposit_id', u.deposit_id, 'amount', u.amount,
            'status', CASE u.type WHEN 'deposit.approved' THEN 'approved'
                                  WHEN 'charge.succeeded' THEN 'succeeded' ELSE 'failed' END,
            'balance_after', u.balance_after, 'failure_code', u.failure_code)) AS data
        FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])
            WITH ORDINALITY AS u(seller_id, type, charge_id, deposit_id, amount, balance_after, failure_code, ord)
        UNION ALL
        SELECT 9223372036854775807, b.seller_id, 'balance.low',
            jsonb_build_object('balance', b.balance_after, 'threshold', f.low_balance_threshold)
        FROM unnest($9::bigint[], $10::bigint[], $11::bigint[]) AS b(seller_id, balance_before, balance_after)
        JOIN notifications_sellerfeed f ON f.seller_id = b.seller_id
        WHERE b.balance_after < f.low_balance_threshold AND b.balance_before >= f.low_balance_threshold
    ), counted AS (
        SELECT seller_id, count(*) AS n FROM candidate GROUP BY seller_id ORDER BY seller_id
    ), bumped AS (
        INSERT INTO notifications_sellerfeed AS f (seller_id, last_seq)
        SELECT seller_id, n FROM counted
        ON CONFLICT (seller_id) DO UPDATE SET last_seq = f.last_seq + EXCLUDED.last_seq
        RETURNING f.seller_id, f.last_seq
    )
    INSERT INTO notifications_event (seller_id, seq, type, created_at, data)
    SELECT c.seller_id, b.last_seq - k.n + row_number() OVER (PARTITION BY c.seller_id ORDER BY c.ord),
           c.type, $1, c.data
    FROM candidate c JOIN bumped b USING (seller_id) JOIN counted k USING (seller_id)
    ORDER BY c.seller_id, c.ord""",
    ["timestamptz", "bigint[]", "text[]", "bigint[]", "bigint[]", "bigint[]", "bigint[]", "text[]",
     "bigint[]", "bigint[]", "bigint[]"],
)

_INSERT_EVENT = PreparedStatement(
    "notifications_insert_event",
    """WITH bumped AS (
        INSERT INTO notifications_sellerfeed AS f (seller_id, last_seq) VALUES ($1, 1)
        ON CONFLICT (seller_id) DO UPDATE SET last_seq = f.last_seq + 1
        RETURNING f.last_seq
    )
    INSERT INTO notifications_event (seller_id, seq, type, created_at, data)
    SELECT $1, last_seq, $2, $3, $4 FROM bumped RETURNING id""",
    ["bigint", "text", "timestamptz", "jsonb"],
)


def events_enabled() -> bool:
    return settings.NOTIFICATIONS_EVENTS


def settled_events_insert(cursor, *, now, intents: list[tuple], balances: list[tuple]) -> None:
    """The settle's events, one statement per batch. `intents`: (seller, type, charge id, deposit id,
    amount, balance after, failure code) in the order applied; `balances`: (seller, balance
    before, balance after) of each seller the batch changed."""
    if not intents or not events_enabled():
        return
    columns = [array_literal(column) for column in zip(*intents, strict=True)]
    balance_columns = [array_literal(column) for column in zip(*balances, strict=True)] or ["{}", "{}", "{}"]
    _INSERT_SETTLED_EVENTS.execute(cursor, [now, *columns, *balance_columns])
    _after_commit({row[0] for row in intents})


def event_record(*, seller_id: int, type: str, data: dict) -> int:
    """One event of one seller, in the caller's transaction. Returns the event's id."""
    if not connection.in_atomic_block:
        raise RuntimeError("event_record must be called inside transaction.atomic()")
    with connection.cursor() as cursor:
        _INSERT_EVENT.execute(cursor, [seller_id, type, timezone.now(), json.dumps(data)])
        (event_id,) = cursor.fetchone()
    _after_commit({seller_id})
    return event_id


def events_batch_completed(*, seller_id: int, batch_id: int, status: str, succeeded: int, failed: int) -> None:
    """`batch.completed`, for whoever records a charge batch's completion (in that transaction)."""
    if events_enabled():
        event_record(
            seller_id=seller_id,
            type=Event.Type.BATCH_COMPLETED,
            data={"batch_id": batch_id, "status": status, "succeeded": succeeded, "failed": failed},
        )


@cache
def _events_recorded_hook():
    return import_string(settings.NOTIFICATIONS_EVENTS_RECORDED)


def _after_commit(seller_ids: set[int]) -> None:
    transaction.on_commit(partial(_events_recorded_hook(), sorted(seller_ids)), robust=True)
