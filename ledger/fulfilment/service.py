"""Sending reserved charges to the provider, and recording what it answered.

Nothing here changes a balance or a hold: the provider's final answer is recorded on the charge as
an intent (`outcome`, `outcome_code`), exactly as the HTTP layer records a charge, and the seller's
settle (ledger/posting.py) applies it under the account lock. No provider call runs inside a
transaction, let alone under an account lock.

A charge is claimed for sending (`reserved` -> `submitted`, committed) before its request leaves,
under an external id derived from its id, so every retry, lookup and callback names the same
transaction and a provider that honours the id never tops up twice. What happens next follows the
adapter's answer (ledger/providers/base.py):
- succeeded / failed: recorded, the seller's settle is woken;
- pending: left `submitted`; a callback or the reconciler's lookup brings the final answer;
- unknown (the request may have been processed): `unknown`; never released blindly, never resent
  under a new id: the reconciler looks it up (ledger/fulfilment/reconcile.py);
- retry (certainly not processed: 429, refused, down): back to `reserved`, sent again later.
Times are `clock_timestamp()`, the time of the statement, whatever transaction it runs in.
The gate (ledger/fulfilment/gate.py) rate-limits sends across all workers, honours Retry-After
and holds everything back while the provider's breaker is open: the charges wait, held."""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.db import connection, transaction

from ledger import events
from ledger.fulfilment.gate import gate_for
from ledger.providers import get_provider
from ledger.providers.base import Outcome, SubmitResult

logger = logging.getLogger(__name__)


def external_id(charge_id: int) -> str:
    return f"{settings.PROVIDER_EXTERNAL_ID_PREFIX}{charge_id}"


def charge_id_of(external: str) -> int | None:
    prefix = settings.PROVIDER_EXTERNAL_ID_PREFIX
    if not external.startswith(prefix) or not external[len(prefix) :].isdigit():
        return None
    return int(external[len(prefix) :])


@cache
def request_pool() -> ThreadPoolExecutor:
    """The process's requests in flight to the provider: all tasks of a worker share it, so the
    worker's concurrency towards the provider is PROVIDER_CONCURRENCY whatever its task count."""
    return ThreadPoolExecutor(max_workers=settings.PROVIDER_CONCURRENCY, thread_name_prefix="provider")


@dataclass
class FulfilRun:
    answered: int = 0
    pending: int = 0
    unknown: int = 0
    retry_later: list[int] = field(default_factory=list)  # to send again after `countdown`
    countdown: float = 0.0


@dataclass(frozen=True)
class Answer:
    """A provider's final answer about one charge, from any source."""

    charge_id: int
    outcome: str  # "succeeded" | "failed"
    failure_code: str | None = None
    provider_reference: str | None = None


def fulfil_charges(charge_ids: list[int]) -> FulfilRun:
    """Send what the gate lets through now; the rest comes back in `retry_later`."""
    provider = get_provider()
    gate = gate_for(provider.name)
    if not gate.allow():  # the breaker is open (or Redis is away): wait, held
        return FulfilRun(retry_later=list(charge_ids), countdown=max(gate.open_for(), 1.0))
    granted = gate.take(len(charge_ids))
    run = FulfilRun(retry_later=list(charge_ids[granted:]))
    if run.retry_later:
        run.countdown = max(gate.paused_for(), gate.wait_hint(), 0.1)
    claimed = _claim(charge_ids[:granted])
    if not claimed:
        return run
    callback_url = settings.PROVIDER_CALLBACK_URL or None

    def send(charge) -> SubmitResult:
        charge_id, msisdn, amount = charge
        return provider.submit(
            external_id=external_id(charge_id), msisdn=msisdn, amount=amount, callback_url=callback_url
        )

    results = list(zip(claimed, request_pool().map(send, claimed), strict=True))
    answers, pending, unknown, retry = [], [], [], []
    for (charge_id, _, _), result in results:
        if result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            answers.append(Answer(charge_id, result.outcome.value, result.failure_code, result.provider_reference))
        elif result.outcome is Outcome.PENDING:
            pending.append((charge_id, result.provider_reference or ""))
        elif result.outcome is Outcome.UNKNOWN:
            unknown.append(charge_id)
        else:
            retry.append(charge_id)
            if result.retry_after:
                gate.pause(result.retry_after)
                run.countdown = max(run.countdown, result.retry_after)
    # The breaker counts the provider's health: an answer is a sign of life; no answer, or a
    # not-processed 5xx, is not. A 429 is an answer (and pauses everyone instead).
    throttled = sum(1 for _, r in results if r.outcome is Outcome.RETRY and r.retry_after)
    failures = len(unknown) + len(retry) - throttled
    if failures:
        gate.record_failure()
    elif results:
        gate.record_success()

    run.answered = record_answers(answers)
    _mark_pending(pending)
    _mark_unknown(unknown)
    if retry:
        _unclaim(retry)
        run.retry_later.extend(retry)
        run.countdown = max(run.countdown, gate.paused_for(), 1.0 if failures else 0.1)
    run.pending, run.unknown = len(pending), len(unknown)
    if unknown:
        logger.warning(
            "%s charges with an unknown outcome: the reconciler looks them up",
            len(unknown),
            extra={"event": "ledger.fulfil_unknown", "charge_ids": unknown[:100]},
        )
    return run


def _claim(charge_ids: list[int]) -> list[tuple[int, str, int]]:
    """Mark the charges submitted, committed before any request leaves. Only charges still
    `reserved` are claimed: a redelivered task, or a second one for the same charges, sends
    nothing twice."""
    if not charge_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_charge SET stage = 'submitted', submitted_at = clock_timestamp(),
                   next_check_at = clock_timestamp() + make_interval(secs => %s)
             WHERE id = ANY(%s) AND stage = 'reserved'
             RETURNING id, phone_number, amount""",
            [settings.PROVIDER_LOOKUP_AFTER, list(charge_ids)],
        )
        return sorted(cursor.fetchall())


def _unclaim(charge_ids: list[int]) -> None:
    """The provider certainly did not process these: back to `reserved`, to be sent again."""
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_charge SET stage = 'reserved', submitted_at = NULL, next_check_at = NULL
             WHERE id = ANY(%s) AND stage = 'submitted' AND outcome IS NULL""",
            [charge_ids],
        )


def _mark_pending(pending: list[tuple[int, str]]) -> None:
    if not pending:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_charge AS c SET provider_reference = nullif(u.reference, '')
             FROM unnest(%s::bigint[], %s::text[]) AS u(id, reference)
             WHERE c.id = u.id AND c.stage = 'submitted' AND c.outcome IS NULL""",
            [[c for c, _ in pending], [r for _, r in pending]],
        )


def _mark_unknown(charge_ids: list[int]) -> None:
    if not charge_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_charge SET stage = 'unknown'
             WHERE id = ANY(%s) AND stage = 'submitted' AND outcome IS NULL""",
            [charge_ids],
        )


def record_answers(answers: list[Answer]) -> int:
    """Record final answers (from a send, a callback or a lookup) on charges that have none yet,
    and wake their sellers' settles after commit. The first answer recorded wins; a duplicate or
    late one changes nothing. Returns how many were recorded."""
    if not answers:
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_charge AS c SET outcome = u.outcome, outcome_code = nullif(u.code, ''),
                   provider_reference = coalesce(nullif(u.reference, ''), c.provider_reference),
                   outcome_at = clock_timestamp(), next_check_at = NULL
             FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS u(id, outcome, code, reference)
             WHERE c.id = u.id AND c.outcome IS NULL AND c.stage IN ('submitted', 'unknown')
             RETURNING c.seller_id""",
            [
                [a.charge_id for a in answers],
                [a.outcome for a in answers],
                [(a.failure_code or "provider_rejected") if a.outcome == "failed" else "" for a in answers],
                [a.provider_reference or "" for a in answers],
            ],
        )
        sellers = {row[0] for row in cursor.fetchall()}
        for seller_id in sorted(sellers):
            events.intents_recorded(seller_id=seller_id)
        return cursor.rowcount
