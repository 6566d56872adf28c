"""The only code that writes events, always inside the transaction of the change they describe.

Sequence: each seller's events are numbered from `SellerFeed.last_seq`. That row is locked by
whoever writes the seller's events, as the last lock of its transaction, and held to commit, so a
seller's events commit in `seq` order and no lock-order cycle is possible (the settle holds the
account, deposit and charge rows before it; everything else holds at most the row it changed).
The settle writes a batch's events in two statements whatever its size: lock and read its
sellers' feed rows, then insert the events (plain columns, numbered here) and the new last seqs.

After commit, `settings.NOTIFICATIONS_EVENTS_RECORDED` (by default the webhook fan-out's enqueue)
is called with the sellers that got events and have an enabled webhook endpoint, as the writing
statement saw them: a seller without one costs no fan-out task. A lost call, or an endpoint
created or enabled while the events were being written, is made up by the periodic sweep."""

import json
import threading
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from core.db.prepared import PreparedStatement, array_literal

# The settle's sellers' feed rows, created if missing, locked (held to commit) and read.
_LOCK_FEEDS = PreparedStatement(
    "notifications_lock_feeds",
    """INSERT INTO notifications_sellerfeed AS f (seller_id, last_seq)
    SELECT seller_id, 0 FROM unnest($1::bigint[]) AS seller_id ORDER BY seller_id
    ON CONFLICT (seller_id) DO UPDATE SET last_seq = f.last_seq
    RETURNING f.seller_id, f.last_seq, f.low_balance_threshold""",
    ["bigint[]"],
)
# $1 time; $2-$9 one row per event (seller, seq, type, charge, deposit, amount, balance after,
# failure code); $10-$11 each seller's new last seq. Plain columns, no JSON: the cheapest rows.
_INSERT_SETTLED_EVENTS = PreparedStatement(
    "notifications_insert_settled_events",
    """WITH inserted AS (
        INSERT INTO notifications_event
            (seller_id, seq, type, created_at, charge_id, deposit_id, amount, balance_after, failure_code)
        SELECT e.seller_id, e.seq, e.type, $1, e.charge_id, e.deposit_id, e.amount, e.balance_after, e.failure_code
        FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                    $9::text[]) AS e(seller_id, seq, type, charge_id, deposit_id, amount, balance_after, failure_code)
    )
    UPDATE notifications_sellerfeed AS f SET last_seq = u.last_seq
    FROM unnest($10::bigint[], $11::bigint[]) AS u(seller_id, last_seq) WHERE f.seller_id = u.seller_id
    RETURNING f.seller_id, EXISTS (
        SELECT 1 FROM notifications_webhookendpoint e WHERE e.seller_id = f.seller_id AND e.enabled)""",
    [
        "timestamptz",
        "bigint[]",
        "bigint[]",
        "text[]",
        "bigint[]",
        "bigint[]",
        "bigint[]",
        "bigint[]",
        "text[]",
        "bigint[]",
        "bigint[]",
    ],
)
_INSERT_BALANCE_LOW = """INSERT INTO notifications_event (seller_id, seq, type, created_at, data)
    VALUES (%s, %s, 'balance.low', %s, %s)"""
# A balance.low alone moves its seller's last seq, and reads whether the seller has an enabled
# webhook endpoint (only then is the fan-out announced).
_BUMP_FEED = """UPDATE notifications_sellerfeed AS f SET last_seq = %s WHERE seller_id = %s
    RETURNING EXISTS (SELECT 1 FROM notifications_webhookendpoint e WHERE e.seller_id = f.seller_id AND e.enabled)"""

_INSERT_EVENT = PreparedStatement(
    "notifications_insert_event",
    """WITH bumped AS (
        INSERT INTO notifications_sellerfeed AS f (seller_id, last_seq) VALUES ($1, 1)
        ON CONFLICT (seller_id) DO UPDATE SET last_seq = f.last_seq + 1
        RETURNING f.last_seq
    )
    INSERT INTO notifications_event (seller_id, seq, type, created_at, data)
    SELECT $1, last_seq, $2, $3, $4 FROM bumped RETURNING id, EXISTS (
        SELECT 1 FROM notifications_webhookendpoint WHERE seller_id = $1 AND enabled)""",
    ["bigint", "text", "timestamptz", "jsonb"],
)


def events_enabled() -> bool:
    return settings.NOTIFICATIONS_EVENTS


def settled_events_insert(*, now, intents: list[tuple], balances: list[tuple]) -> None:
    """The settle's events, in its transaction: two statements per batch, whatever its size.
    `intents`: (seller, type, charge id, deposit id, amount, balance after, failure code) in the
    order applied; `balances`: (seller, balance before, balance after) of each seller the batch
    changed. `balance.low` is written when the batch takes a balance from at least the seller's
    threshold to below it."""
    # A batch of reservations alone writes no intent event, but its debits may still cross a
    # seller's threshold: those sellers' feeds are read too.
    sellers = {row[0] for row in intents} | {seller for seller, before, after in balances if after < before}
    if not sellers or not events_enabled():
        return
    if not connection.in_atomic_block:
        raise RuntimeError("settled_events_insert must be called inside the settle's transaction")
    with connection.cursor() as cursor:
        _settled_events_write(cursor, now, sellers, intents, balances)


def _settled_events_write(cursor, now, sellers: set[int], intents: list[tuple], balances: list[tuple]) -> None:
    _LOCK_FEEDS.execute(cursor, [array_literal(sorted(sellers))])
    last_seq, threshold = {}, {}
    for seller_id, seq, low in cursor.fetchall():
        last_seq[seller_id], threshold[seller_id] = seq, low
    seqs = []
    for row in intents:
        last_seq[row[0]] += 1
        seqs.append(last_seq[row[0]])
    lows = []
    for seller_id, before, after in balances:
        low = threshold.get(seller_id)
        if low is not None and after < low <= before:
            last_seq[seller_id] += 1
            lows.append((seller_id, last_seq[seller_id], now, json.dumps({"balance": after, "threshold": low})))
    subscribed = set()
    if intents:  # also moves every locked feed's last_seq, the balance.low ones included
        columns = [array_literal(column) for column in zip(*intents, strict=True)]
        _INSERT_SETTLED_EVENTS.execute(
            cursor,
            [
                now,
                columns[0],
                array_literal(seqs),
                *columns[1:],
                array_literal(last_seq),
                array_literal(last_seq.values()),
            ],
        )
        subscribed = {seller_id for seller_id, has_endpoint in cursor.fetchall() if has_endpoint}
    elif not lows:
        return
    for low in lows:
        cursor.execute(_INSERT_BALANCE_LOW, low)
        if not intents:
            cursor.execute(_BUMP_FEED, [low[1], low[0]])
            if cursor.fetchone()[0]:
                subscribed.add(low[0])
    _after_commit(subscribed)


def event_record(*, seller_id: int, type: str, data: dict) -> int:
    """One event of one seller, in the caller's transaction. Returns the event's id."""
    if not connection.in_atomic_block:
        raise RuntimeError("event_record must be called inside transaction.atomic()")
    with connection.cursor() as cursor:
        _INSERT_EVENT.execute(cursor, [seller_id, type, timezone.now(), json.dumps(data)])
        event_id, has_endpoint = cursor.fetchone()
    _after_commit({seller_id} if has_endpoint else set())
    return event_id


@cache
def _events_recorded_hook():
    return import_string(settings.NOTIFICATIONS_EVENTS_RECORDED)


# Sellers with events whose commit has not been announced yet, per thread (one connection each).
_unannounced = threading.local()


def _after_commit(seller_ids: set[int]) -> None:
    """One announcement per commit, however many writes it held: the first callback announces
    every seller gathered, the others find nothing. Sellers of a rolled-back transaction are
    announced with the next commit: a fan-out with nothing new does nothing."""
    pending = getattr(_unannounced, "sellers", None)
    if pending is None:
        pending = _unannounced.sellers = set()
    pending.update(seller_ids)
    if pending:
        transaction.on_commit(_announce, robust=True)


def _announce() -> None:
    sellers = getattr(_unannounced, "sellers", None)
    if sellers:
        _unannounced.sellers = set()
        _events_recorded_hook()(sorted(sellers))
