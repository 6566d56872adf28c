"""Webhook delivery: fan-out of events to endpoints, attempts, and their outcomes.

Fan-out records one delivery row per (endpoint, event) for each endpoint's events after its
`fanned_seq`, in one statement; seqs commit in order (notifications.models), so none is skipped.
An attempt first claims due deliveries (`FOR UPDATE SKIP LOCKED`, then a lease in
`next_attempt_at`), commits, sends them with no transaction open, then records the outcomes. A
worker that dies mid-send leaves its claims to run out: the deliveries are due again and sent
again (at least once). Nothing here imports Celery; notifications.tasks drives it."""

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import requests
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.http import retry_after_seconds
from notifications.models import Event, WebhookDelivery, WebhookEndpoint
from notifications.outbox import event_record
from notifications.payload import COLUMNS, event_text
from notifications.signing import signed_headers
from notifications.urlsafety import url_problem

logger = logging.getLogger(__name__)

CLAIM_LIMIT = 50
MAX_ERROR = 500

_FAN_OUT = """
WITH endpoint AS (
    SELECT id, seller_id, fanned_seq, event_types FROM notifications_webhookendpoint
    WHERE seller_id = ANY(%s) AND enabled ORDER BY id FOR UPDATE
), fresh AS (
    SELECT endpoint.id AS endpoint_id, event.id AS event_id, event.seq, event.type, endpoint.event_types
    FROM endpoint JOIN notifications_event event
      ON event.seller_id = endpoint.seller_id AND event.seq > endpoint.fanned_seq
), recorded AS (
    INSERT INTO notifications_webhookdelivery (endpoint_id, event_id, status, attempts, next_attempt_at,
                                               last_error, created_at)
    SELECT endpoint_id, event_id, 'pending', 0, now(), '', now() FROM fresh
    WHERE type <> 'webhook.test' AND (cardinality(event_types) = 0 OR type = ANY(event_types))
    ON CONFLICT (endpoint_id, event_id) DO NOTHING
    RETURNING endpoint_id
)
UPDATE notifications_webhookendpoint AS e SET fanned_seq = m.seq
FROM (SELECT endpoint_id, max(seq) AS seq FROM fresh GROUP BY endpoint_id) AS m
WHERE e.id = m.endpoint_id
RETURNING e.id, EXISTS (SELECT 1 FROM recorded WHERE recorded.endpoint_id = e.id)
"""

_CLAIM = """
UPDATE notifications_webhookdelivery AS d
SET attempts = d.attempts + 1, next_attempt_at = now() + %s * interval '1 second', last_attempt_at = now()
FROM notifications_event AS event
WHERE d.id IN (
    SELECT id FROM notifications_webhookdelivery
    WHERE endpoint_id = %s AND status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED
) AND event.id = d.event_id
RETURNING d.id, d.attempts, {event_columns}
"""

_CLAIM = _CLAIM.format(event_columns=", ".join(f"event.{column}" for column in COLUMNS))

_RECORD = """
UPDATE notifications_webhookdelivery AS d
SET status = u.status, next_attempt_at = u.next_attempt_at, attempts = d.attempts - u.undo,
    last_status_code = u.status_code, last_duration_ms = u.duration_ms, last_error = u.error,
    delivered_at = CASE WHEN u.status = 'succeeded' THEN now() ELSE d.delivered_at END
FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::int[], %s::int[], %s::int[], %s::text[])
    AS u(id, status, next_attempt_at, undo, status_code, duration_ms, error)
WHERE d.id = u.id
"""


def fan_out(*, seller_ids: list[int]) -> list[int]:
    """Record the deliveries of the sellers' new events; returns the endpoints that got some."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_FAN_OUT, [sorted(seller_ids)])
        return [endpoint_id for endpoint_id, recorded in cursor.fetchall() if recorded]


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    attempts: int
    body: str
    msg_id: str


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: str
    next_attempt_at: object
    undo: int
    status_code: int | None
    duration_ms: int | None
    error: str


def retry_delay(*, attempts: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones (None: no attempt left)."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts] * random.uniform(0.9, 1.1)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


_sessions = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per delivery thread."""
    if not hasattr(_sessions, "session"):
        _sessions.session = requests.Session()
    return _sessions.session


def _claim(endpoint_id: int) -> list[Claimed]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM, [settings.WEBHOOK_LEASE, endpoint_id, CLAIM_LIMIT])
        rows = cursor.fetchall()
    claimed = []
    for delivery_id, attempts, *event in rows:
        claimed.append(Claimed(delivery_id, attempts, event_text(*event), f"evt_{event[0]}"))
    return claimed


def _attempt(
    endpoint: WebhookEndpoint, secrets_: list[str], item: Claimed, *, refusal: str | None, claimed_at: float
) -> Outcome:
    """One HTTP attempt (in a pool thread: no database here)."""
    started = time.monotonic()
    if started - claimed_at + settings.WEBHOOK_TIMEOUT > settings.WEBHOOK_LEASE:
        # Could outlive its claim: hand it back untried.
        return Outcome(item.delivery_id, WebhookDelivery.Status.PENDING, timezone.now(), 1, None, None, "")
    status_code, retry_after, error = None, None, ""
    if refusal:
        error = refusal
    else:
        headers = signed_headers(secrets_=secrets_, msg_id=item.msg_id, body=item.body, now=timezone.now())
        try:
            response = _session().post(
                endpoint.url,
                data=item.body.encode(),
                headers=headers,
                timeout=settings.WEBHOOK_TIMEOUT,
                allow_redirects=False,
            )
            status_code = response.status_code
            retry_after = retry_after_seconds(response)
            response.close()
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
    duration_ms = int((time.monotonic() - started) * 1000)
    if status_code is not None and 200 <= status_code < 300:
        return Outcome(item.delivery_id, WebhookDelivery.Status.SUCCEEDED, None, 0, status_code, duration_ms, "")
    if status_code is not None and not error:
        error = f"HTTP {status_code}"
    delay = None if status_code == 410 else retry_delay(attempts=item.attempts, retry_after=retry_after)
    if delay is None:
        return Outcome(item.delivery_id, WebhookDelivery.Status.FAILED, None, 0, status_code, duration_ms, error)
    next_at = timezone.now() + timedelta(seconds=delay)
    return Outcome(item.delivery_id, WebhookDelivery.Status.PENDING, next_at, 0, status_code, duration_ms, error)


def endpoint_deliver(*, endpoint_id: int, time_budget: float) -> float | None:
    """Send the endpoint's due deliveries until none is due or `time_budget` seconds have passed.
    Returns the seconds until its next pending delivery is due, or None when there is none."""
    started = time.monotonic()
    # A few requests in flight per endpoint (deliveries are unordered anyway); their threads keep
    # their keep-alive sessions for the whole task.
    with ThreadPoolExecutor(max_workers=settings.WEBHOOK_ENDPOINT_CONCURRENCY) as pool:
        return _deliver(endpoint_id, started, time_budget, pool)


def _deliver(endpoint_id: int, started: float, time_budget: float, pool: ThreadPoolExecutor) -> float | None:
    while time.monotonic() - started < time_budget:
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, enabled=True).first()
        if endpoint is None:
            return None
        claimed = _claim(endpoint_id)
        if not claimed:
            break
        claimed_at = time.monotonic()
        secrets_ = [endpoint.secret]
        if endpoint.previous_secret and endpoint.previous_secret_expires_at > timezone.now():
            secrets_.append(endpoint.previous_secret)
        refusal = url_problem(endpoint.url)
        attempt = partial(_attempt, endpoint, secrets_, refusal=refusal, claimed_at=claimed_at)
        outcomes_record(endpoint, list(pool.map(attempt, claimed)))
    nxt = (
        WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status=WebhookDelivery.Status.PENDING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    return None if nxt is None else max(0.0, (nxt - timezone.now()).total_seconds())


def outcomes_record(endpoint: WebhookEndpoint, outcomes: list[Outcome]) -> None:
    """Record a claim's outcomes in one statement, then the endpoint's health: 410 or failing
    for WEBHOOK_DISABLE_AFTER disables it; any success clears `failing_since`."""
    tried = [o for o in outcomes if not o.undo]
    columns = [
        list(column)
        for column in zip(
            *[
                (o.delivery_id, o.status, o.next_attempt_at, o.undo, o.status_code, o.duration_ms, o.error)
                for o in outcomes
            ],
            strict=True,
        )
    ]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_RECORD, columns)
        if not tried:
            return
        if any(o.status_code == 410 for o in tried):
            _endpoint_disable(endpoint.pk, reason="The endpoint answered 410 Gone.")
        elif any(o.status == WebhookDelivery.Status.SUCCEEDED for o in tried):
            WebhookEndpoint.objects.filter(pk=endpoint.pk).exclude(failing_since=None).update(failing_since=None)
        else:
            now = timezone.now()
            WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since=None).update(failing_since=now)
            limit = now - timedelta(seconds=settings.WEBHOOK_DISABLE_AFTER)
            if WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True, failing_since__lte=limit).exists():
                _endpoint_disable(endpoint.pk, reason="Every attempt failed for too long.")


def _endpoint_disable(endpoint_id: int, *, reason: str) -> None:
    """Disable once and tell the seller with an event (its other endpoints deliver it)."""
    endpoint = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint_id, enabled=True).first()
    if endpoint is None:
        return
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(enabled=False, disabled_reason=reason)
    logger.warning("webhook endpoint disabled", extra={"endpoint_id": endpoint_id, "reason": reason})
    event_record(
        seller_id=endpoint.seller_id,
        type=Event.Type.ENDPOINT_DISABLED,
        data={"endpoint_id": endpoint_id, "url": endpoint.url, "reason": reason},
    )


def lagging_sellers() -> list[int]:
    """Sellers with an enabled endpoint behind their events (a fan-out lost with the broker)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT DISTINCT e.seller_id FROM notifications_webhookendpoint e
            JOIN notifications_sellerfeed f ON f.seller_id = e.seller_id
            WHERE e.enabled AND f.last_seq > e.fanned_seq"""
        )
        return [row[0] for row in cursor.fetchall()]


def endpoints_due() -> list[int]:
    """Enabled endpoints with a delivery due now (a retry, or a claim whose worker died)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT e.id FROM notifications_webhookendpoint e WHERE e.enabled AND EXISTS (
                SELECT 1 FROM notifications_webhookdelivery d
                WHERE d.endpoint_id = e.id AND d.status = 'pending' AND d.next_attempt_at <= now())"""
        )
        return [row[0] for row in cursor.fetchall()]
