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
  under a new id: the reconciler looks it up a moment later and, while the provider has no record
  of it, sends it again under the same id (ledger/fulfilment/reconcile.py);
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
from urllib.parse import urlencode

import redis
from django.conf import settings
from django.db import connection, transaction

from core.db.prepared import PreparedStatement
from ledger import charge_lifecycle as lifecycle
from ledger import conflicts, events
from ledger.charge_lifecycle import Answer, Reversal, ReversalsRecorded
from ledger.fulfilment import routing
from ledger.fulfilment.gate import ProviderGate, gate_for
from ledger.fulfilment.identity import Asked, external_id_prefix, mismatch
from ledger.models import Charge
from providers import get_provider, http, provider_names
from providers.base import LookupResult, Outcome, Provider, ProviderError, SubmitResult

# A refusal names its reason (providers/base.py, REFUSALS): the charge fails with a code of its
# own rather than the provider_rejected the adapter gives any refusal.
REFUSAL_FAILURE_CODES = {
    "insufficient_balance": Charge.FailureCode.PROVIDER_INSUFFICIENT_BALANCE.value,
    "product_unavailable": Charge.FailureCode.PRODUCT_UNAVAILABLE.value,
}

logger = logging.getLogger(__name__)


@dataclass
class FulfilRun:
    answered: int = 0
    pending: int = 0
    unknown: int = 0
    retry_later: list[int] = field(default_factory=list)  # to send again after `countdown`
    countdown: float = 0.0
    moved: list[int] = field(default_factory=list)  # refused before processing: at their next provider now

    def add(self, other: "FulfilRun") -> None:
        """Another provider's part of the same call (its moves are not ours to report)."""
        self.answered, self.pending, self.unknown = (
            self.answered + other.answered,
            self.pending + other.pending,
            self.unknown + other.unknown,
        )
        self.retry_later += other.retry_later
        self.countdown = max(self.countdown, other.countdown)


def fulfil_charges(charge_ids: list[int]) -> FulfilRun:
    """Send what the gates let through now, each charge to its provider (routing.py); the rest
    comes back in `retry_later`. A charge its provider refused before processing moves to its next
    route and is sent there in the same call."""
    run = FulfilRun()
    for provider_name, planned in routing.plan(charge_ids).items():
        at = fulfil_at(get_provider(provider_name), planned)
        run.add(at)
        if at.moved:
            run.add(fulfil_charges(at.moved))  # each move leaves a provider behind: bounded by the routes
    return run


def fulfil_at(provider: Provider, planned: list[routing.Planned]) -> FulfilRun:
    """Send charges planned for one provider, through its gate."""
    charge_ids = [one.charge_id for one in planned]
    gate = gate_for(provider.name)
    if not gate.allow():  # the breaker is open (or Redis is away): move on, or wait held
        # Only an open breaker says the provider is unavailable; Redis away says nothing of it.
        moved = routing.fail_over(provider.name, planned, routing.Reason.UNAVAILABLE) if _open(gate) else []
        run = FulfilRun(moved=moved)
        run.retry_later = [charge for charge in charge_ids if charge not in set(run.moved)]
        run.countdown = max(gate.open_for(), 1.0) if run.retry_later else 0.0
        return run
    granted = gate.take(len(charge_ids))
    run = FulfilRun(retry_later=list(charge_ids[granted:]))
    if run.retry_later:
        run.countdown = max(gate.paused_for(), gate.wait_hint(), 0.1)
    claimed = _claim(provider.name, planned[:granted])
    if not claimed:
        return run

    results = send_all(provider, claimed)
    sorted_ = SentAnswers.of(results)
    failures = sorted_.report_health(gate)
    if sorted_.retry_after:
        gate.pause(sorted_.retry_after)
        run.countdown = max(run.countdown, sorted_.retry_after)
    run.moved = routing.after_refusals(provider.name, planned, sorted_)
    run.answered = record_answers(sorted_.answers)
    lifecycle.mark_pending(sorted_.pending)
    lifecycle.mark_unknown(sorted_.unknown, check_after=settings.PROVIDER_RESEND_AFTER)
    record_mismatches(sorted_.mismatched)
    if sorted_.retry:
        lifecycle.unclaim(sorted_.retry)
        run.retry_later.extend(sorted_.retry)
        run.countdown = max(run.countdown, gate.paused_for(), 1.0 if failures else 0.1)
    run.pending, run.unknown = len(sorted_.pending), len(sorted_.unknown)
    if sorted_.unknown:
        logger.warning(
            "%s charges with an unknown outcome: the reconciler looks them up",
            len(sorted_.unknown),
            extra={"event": "ledger.fulfil_unknown", "charge_ids": sorted_.unknown[:100]},
        )
    return run


def _open(gate: ProviderGate) -> bool:
    try:
        return gate.breaker_state() == "open"
    except redis.RedisError:
        return False


def send_all(provider: Provider, asked: list[Asked]) -> list[tuple[Asked, SubmitResult]]:
    """One request per charge, under each charge's external id, all sent together through the
    provider's client (one thread's libcurl multi handle: providers/transfers.py, at most
    PROVIDER_CONCURRENCY in flight per worker process). A provider that cannot be asked
    (ProviderError: refusing our credentials, a charge it cannot be sent as named) leaves that
    charge unknown, the conservative answer: held, logged at ERROR, looked up and sent again on
    the reconciler's short schedule, never failed, and no other charge of the batch loses its
    answer."""
    callback_url = callback_url_for(provider.name)
    results: dict[int, SubmitResult | http.Request] = {}
    for one in asked:
        results[one.charge_id] = _asking(
            provider, one, provider.submit_request, external_id=one.external_id, msisdn=one.msisdn,
            amount=one.amount, product_id=one.product_id, callback_url=callback_url,
        )  # fmt: skip
    to_send = [one for one in asked if isinstance(results[one.charge_id], http.Request)]
    answers = provider.client.exchange_all([results[one.charge_id] for one in to_send])
    for one, answer in zip(to_send, answers, strict=True):
        request = results[one.charge_id]
        results[one.charge_id] = _asking(provider, one, provider.submit_answer, one.external_id, request, answer)
    return [(one, results[one.charge_id]) for one in asked]


def _asking(provider: Provider, one: Asked, step, *args, **kwargs):
    """`step(...)` about one charge; a provider that cannot be asked leaves it UNKNOWN."""
    try:
        return step(*args, **kwargs)
    except ProviderError as exc:
        logger.error("provider %s cannot be asked about charge %s: %s", provider.name, one.charge_id, exc)
        return SubmitResult(Outcome.UNKNOWN, detail=str(exc))


@cache
def request_pool() -> ThreadPoolExecutor:
    """The threads a worker's lookups run from, all tasks' together: each lookup is a request (or
    two) made on its own, so PROVIDER_CONCURRENCY of them wait on the provider at once."""
    return ThreadPoolExecutor(max_workers=settings.PROVIDER_CONCURRENCY, thread_name_prefix="provider")


def callback_url_for(provider: str) -> str | None:
    """Where this provider posts its callbacks: PROVIDER_CALLBACK_URL, naming the provider when
    several are configured (ledger/api/provider.py reads it back)."""
    url = settings.PROVIDER_CALLBACK_URL or None
    if url is None or len(provider_names()) == 1:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'provider': provider})}"


def request_lease() -> float:
    """Longer than a request to the provider can take, the transport's one resend of a stale
    connection's included (providers/http.py): a lookup (at most two requests) or a resend begun
    no earlier than this ago is over."""
    return 2 * (settings.PROVIDER_CONNECT_TIMEOUT + settings.PROVIDER_READ_TIMEOUT) + 1.0


@dataclass
class SentAnswers:
    """What a batch of sends answered, sorted by what each answer calls for (the module docstring)."""

    answers: list[Answer] = field(default_factory=list)  # final, and about what we asked
    pending: list[tuple[int, str]] = field(default_factory=list)  # (charge, provider reference or "")
    unknown: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # certainly not processed by this request
    mismatched: list[tuple[Asked, str, SubmitResult]] = field(default_factory=list)
    retry_after: float = 0.0  # the longest Retry-After of a 429
    throttled: int = 0
    sent: int = 0
    recorded: int = 0  # answers recorded (a duplicate of one recorded already is not)

    @classmethod
    def of(cls, results: list[tuple[Asked, SubmitResult]]) -> "SentAnswers":
        sorted_ = cls(sent=len(results))
        for asked, result in results:
            if result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.PENDING, Outcome.MISMATCH) and (
                why := mismatch(asked, result)
            ):
                sorted_.mismatched.append((asked, why, result))
            elif result.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
                sorted_.answers.append(answer_from(asked, result))
            elif result.outcome is Outcome.PENDING:
                sorted_.pending.append((asked.charge_id, result.provider_reference or ""))
            elif result.outcome is Outcome.RETRY:
                sorted_.retry.append(asked.charge_id)
                if result.retry_after:
                    sorted_.throttled += 1
                    sorted_.retry_after = max(sorted_.retry_after, result.retry_after)
            else:  # UNKNOWN, and a REVERSED before any answer (a reversal is a lookup's concern)
                sorted_.unknown.append(asked.charge_id)
        return sorted_

    def report_health(self, gate: ProviderGate) -> int:
        """The breaker counts the provider's health: an answer is a sign of life; no answer, or a
        not-processed 5xx, is not. A 429 is an answer (and pauses everyone instead), and so is a
        mismatch. Returns the failures."""
        failures = len(self.unknown) + len(self.retry) - self.throttled
        if failures:
            gate.record_failure()
        elif self.sent:
            gate.record_success()
        return failures


def _claim(provider: str, planned: list[routing.Planned]) -> list[Asked]:
    """What we ask the provider for each charge claimed: committed before any request leaves. Its
    first lookup (a pending top-up's, or a worker's killed before it recorded the answer) comes
    once the request is surely over: a lookup of a request still in flight finds nothing, and
    would send it again for nothing."""
    first_check_after = max(settings.PROVIDER_LOOKUP_AFTER, request_lease())
    rows = lifecycle.claim_for_sending(
        [one.charge_id for one in planned],
        first_check_after=first_check_after,
        external_id_prefix=external_id_prefix(),
        provider=provider,
        routes={one.charge_id: (one.route.served_by, one.route.cost) for one in planned},
    )
    return [Asked(*row) for row in rows]


def record_mismatches(mismatched: list[tuple[Asked, str, SubmitResult | LookupResult]]) -> None:
    """Answers about another transaction: the charge stays held, `unknown`, and is kept out of
    the reconciler's resends (it was found, just not as asked); an admin looks. Logged at ERROR
    with the event `ledger.provider_mismatch` and counted by the metrics (an alert)."""
    if not mismatched:
        return
    lifecycle.mark_unknown([asked.charge_id for asked, _, _ in mismatched], check_after=settings.PROVIDER_LOOKUP_AFTER)
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
    delivered (its `amount`, after `identity.mismatch` found it equal to what we asked); on a
    failure its reason, a refusal's own code where it gave one."""
    delivered = said.amount if said.outcome is Outcome.SUCCEEDED else None
    failure_code = REFUSAL_FAILURE_CODES.get(said.refusal or "", said.failure_code)
    return Answer(asked.charge_id, said.outcome.value, failure_code, said.provider_reference, delivered)


# Prepared (core/db/prepared.py): a callback's first read, one charge at a time.
_ASKED_BY_EXTERNAL_ID = PreparedStatement(
    "ledger_asked_by_external_id",
    f"SELECT {lifecycle.ASKED_COLUMNS} FROM ledger_charge WHERE external_id = ANY($1)",
    ["text[]"],
)


def asked_by_external_id(external_ids: list[str]) -> dict[str, Asked]:
    """Our charges sent under these external ids (callbacks, the provider's record)."""
    with connection.cursor() as cursor:
        _ASKED_BY_EXTERNAL_ID.execute(cursor, [list(external_ids)])
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


def reversal_from(asked: Asked, said: LookupResult) -> Reversal:
    """The provider's reversal of what we asked, with its reason (its own status or detail)."""
    return Reversal(asked.charge_id, said.provider_status or said.detail or "reversed", said.provider_reference)


def record_reversals(reversals: list[Reversal]) -> ReversalsRecorded:
    """Record the provider's reversals (a callback, a lookup, the daily close) through the one
    lifecycle function (`charge_lifecycle.record_reversals`: a refund for a charge it succeeded, a
    release for one still held), and wake the sellers' settles after commit. A second delivery of
    the same reversal records nothing."""
    if not reversals:
        return ReversalsRecorded([], [])
    with transaction.atomic():
        recorded = lifecycle.record_reversals(reversals)
        for seller_id in sorted(set(recorded.sellers)):
            events.intents_recorded(seller_id=seller_id)
    if recorded.sellers:
        logger.warning(
            "provider reversed %s top-ups: refunds (or releases) recorded",
            len(recorded.sellers),
            extra={"event": "ledger.provider_reversal", "charge_ids": [r.charge_id for r in reversals][:100]},
        )
    return recorded


def record_late_successes(found: list[tuple[Asked, LookupResult | SubmitResult]]) -> list[int]:
    """Successes the provider reports for charges we failed and released: recorded as conflicts for
    an admin (ledger/conflicts.py), never applied. Logged at ERROR (`ledger.late_success`) when
    first seen. Answers the charges recorded for the first time."""
    if not found:
        return []
    recorded = conflicts.record_late_successes(
        [
            conflicts.LateSuccess(asked.charge_id, "the provider reports a success after we failed it", _answered(said))
            for asked, said in found
        ]
    )
    if recorded:
        logger.error(
            "provider reports %s top-ups delivered that we failed and released: held for an admin",
            len(recorded),
            extra={"event": "ledger.late_success", "charge_ids": recorded[:100]},
        )
    return recorded
