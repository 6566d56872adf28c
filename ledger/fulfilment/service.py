"""Sending reserved charges to the provider, and recording what it answered.

Nothing here changes a balance or a hold: the provider's final answer is recorded on the charge as
an intent (`outcome`, `outcome_code`), exactly as the HTTP layer records a charge, and the seller's
settle (ledger/posting.py) applies it under the account lock. No provider call runs inside a
transaction, let alone under an account lock.

A charge is claimed for sending (`reserved` -> `submitted`, committed) before its request leaves,
and its external id (ledger/fulfilment/identity.py) is fixed on it then, so every retry, lookup and
callback names the same transaction and a provider that honours the id never tops up twice. An
answer is checked against what we asked before anything is recorded. What happens next follows
the adapter's answer (providers/base.py):
- succeeded / failed: recorded, the seller's settle is woken;
- pending: left `submitted`; a callback or the reconciler's lookup brings the final answer;
- unknown (the request may have been processed): `unknown`; never released blindly, never resent
  under a new id: the reconciler looks it up (ledger/fulfilment/reconcile.py);
- retry (certainly not processed: 429, refused, down): back to `reserved`, sent again later;
- an answer about another transaction (a mismatch): `unknown`, held, recorded for an admin
  (ProviderMismatch) and logged as an error; never a success, never a failure.
Every move of a charge named here is a function of ledger/charge_lifecycle.py; this module decides
which one an answer calls for. The gate (ledger/fulfilment/gate.py) rate-limits sends across all
workers, honours Retry-After and holds everything back while the provider's breaker is open: the
charges wait, held."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.db import connection, transaction

from ledger import charge_lifecycle as lifecycle
from ledger import events
from ledger.charge_lifecycle import Answer
from ledger.fulfilment.gate import gate_for
from ledger.fulfilment.identity import Asked, external_id_prefix, mismatch
from providers import get_provider
from providers.base import LookupResult, Outcome, SubmitResult

logger = logging.getLogger(__name__)


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

    def send(asked: Asked) -> SubmitResult:
        return provider.submit(
            external_id=asked.external_id,
            msisdn=asked.msisdn,
            amount=asked.amount,
            product_id=asked.product_id,
            callback_url=callback_url,
        )

    results = list(zip(claimed, request_pool().map(send, claimed), strict=True))
    answers, pending, unknown, retry, mismatched = [], [], [], [], []
    for asked, result in results:
        if result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.PENDING, Outcome.MISMATCH) and (
            why := mismatch(asked, result)
        ):
            mismatched.append((asked, why, result))
        elif result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            answers.append(answer_from(asked, result))
        elif result.outcome is Outcome.PENDING:
            pending.append((asked.charge_id, result.provider_reference or ""))
        elif result.outcome is Outcome.UNKNOWN:
            unknown.append(asked.charge_id)
        else:
            retry.append(asked.charge_id)
            if result.retry_after:
                gate.pause(result.retry_after)
                run.countdown = max(run.countdown, result.retry_after)
    # The breaker counts the provider's health: an answer is a sign of life; no answer, or a
    # not-processed 5xx, is not. A 429 is an answer (and pauses everyone instead).
    throttled = sum(1 for _, r in results if r.outcome is Outcome.RETRY and r.retry_after)
    failures = len(unknown) + len(retry) - throttled  # a mismatch is an answer: the provider is alive
    if failures:
        gate.record_failure()
    elif results:
        gate.record_success()

    run.answered = record_answers(answers)
    lifecycle.mark_pending(pending)
    lifecycle.mark_unknown(unknown)
    record_mismatches(mismatched)
    if retry:
        lifecycle.unclaim(retry)
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


def _claim(charge_ids: list[int]) -> list[Asked]:
    """What we ask the provider for each charge claimed: committed before any request leaves."""
    rows = lifecycle.claim_for_sending(
        charge_ids, first_check_after=settings.PROVIDER_LOOKUP_AFTER, external_id_prefix=external_id_prefix()
    )
    return [Asked(*row) for row in rows]


def record_mismatches(mismatched: list[tuple[Asked, str, SubmitResult | LookupResult]]) -> None:
    """Answers about another transaction: the charge stays held, `unknown`, and is kept out of
    the reconciler's timeout (it was found, just not as asked); an admin looks. Logged at ERROR
    with the event `ledger.provider_mismatch` and counted by the metrics (an alert)."""
    if not mismatched:
        return
    lifecycle.mark_unknown([asked.charge_id for asked, _, _ in mismatched])
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO ledger_providermismatch (charge_id, detail, answered, first_seen_at, last_seen_at)
             SELECT u.id, u.detail, u.answered::jsonb, clock_timestamp(), clock_timestamp()
               FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS u(id, detail, answered)
             ON CONFLICT (charge_id) DO UPDATE SET detail = EXCLUDED.detail, answered = EXCLUDED.answered,
                   last_seen_at = EXCLUDED.last_seen_at""",
            [
                [asked.charge_id for asked, _, _ in mismatched],
                [why for _, why, _ in mismatched],
                [json.dumps(_answered(said)) for _, _, said in mismatched],
            ],
        )
    for asked, why, said in mismatched:
        logger.error(
            "provider answered charge %s (%s) about another transaction: %s; the hold stays until an admin looks",
            asked.charge_id,
            asked.external_id,
            why,
            extra={"event": "ledger.provider_mismatch", "charge_id": asked.charge_id, "answered": _answered(said)},
        )


def _answered(said: SubmitResult | LookupResult) -> dict:
    return {
        "outcome": said.outcome.value if said.outcome else None,
        "external_id": said.external_id,
        "msisdn": said.msisdn,
        "amount": said.amount,
        "created_at": said.created_at.isoformat() if said.created_at else None,
        "provider_reference": said.provider_reference,
    }


def answer_from(asked: Asked, said: SubmitResult | LookupResult) -> Answer:
    """The final answer the provider gave about what we asked: on a success, the amount it reports
    delivered (its `amount`, after `identity.mismatch` found it equal to what we asked)."""
    delivered = said.amount if said.outcome is Outcome.SUCCEEDED else None
    return Answer(asked.charge_id, said.outcome.value, said.failure_code, said.provider_reference, delivered)


def asked_by_external_id(external_ids: list[str]) -> dict[str, Asked]:
    """Our charges sent under these external ids (callbacks, the provider's record)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {lifecycle.ASKED_COLUMNS} FROM ledger_charge WHERE external_id = ANY(%s)",
            [external_ids],
        )
        return {row[1]: Asked(*row) for row in cursor.fetchall()}


def record_answers(answers: list[Answer]) -> int:
    """Record final answers (from a send, a callback or a lookup) on charges that have none yet
    (`charge_lifecycle.record_answers`: the first answer recorded wins), and wake their sellers'
    settles after commit. Returns how many were recorded."""
    if not answers:
        return 0
    with transaction.atomic():
        sellers = lifecycle.record_answers(answers)
        for seller_id in sorted(set(sellers)):
            events.intents_recorded(seller_id=seller_id)
    return len(sellers)
