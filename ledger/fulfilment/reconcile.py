"""Resolving what the fulfilment workers could not: the reconciler (beat, on the fulfil queue).

- Charges reserved but not sent for PROVIDER_REDISPATCH_AFTER seconds (a lost publish, a worker
  killed before it claimed them) are sent again. A shard worker's recovery on (re)connect sends
  its shards' reserved charges at once (`charges_reserved_of_shard`): a shard worker killed
  between its settle's commit and its publish loses the send of what that settle reserved.
- Charges `submitted` (pending at the provider, or a worker killed between its claim and its
  record) or `unknown` (the answer was lost) are looked up by external id when their
  `next_check_at` comes. A final status is recorded as the answer. A transaction still pending
  there is looked up again later (PROVIDER_LOOKUP_AFTER, doubling to PROVIDER_LOOKUP_BACKOFF_MAX).
  When the provider has **no record** of the charge, it is sent again at once under the same
  external id (`charge_lifecycle.resend`): every provider dedupes by it, so a resend is never a
  second top-up, and its answer settles the charge like a first send's. A resend whose answer is
  lost, or a lookup that could not be made, is tried again on the short schedule
  (PROVIDER_RESEND_AFTER, doubling to PROVIDER_RESEND_BACKOFF_MAX). So a charge fails only on the
  provider's own refusal; one the provider never answers stays held (`unknown`, reported as
  overdue after PROVIDER_UNKNOWN_ALERT_AFTER) and is never timed out: a hold is never released for
  a request the provider may have processed. A found transaction that is not the one we asked for
  is a mismatch (ledger/fulfilment/identity.py): the charge stays held for an admin, never resent.
- The lookups and resends share the gate with the sends: nothing while the breaker is open, resends
  within the rate limit; a run that reached nothing is a failure for the breaker, and one that got
  any answer closes it when it was the half-open breaker's trial.
- `provider_window` compares our charges with the provider's own record over a time window
  (`manage.py reconcile_provider`)."""

import logging
from dataclasses import dataclass, field
from datetime import datetime

import redis
from django.conf import settings
from django.db import connection
from django.db.models.functions import Coalesce
from django.utils import timezone

from ledger import charge_lifecycle as lifecycle
from ledger.charge_lifecycle import ASKED_COLUMNS, FAILED, OPEN, OPEN_SQL, RESERVED, SENT_SQL, SUCCEEDED, UNKNOWN
from ledger.fulfilment.gate import ProviderGate, gate_for
from ledger.fulfilment.identity import Asked, external_id_prefix, mismatch
from ledger.fulfilment.service import (
    SentAnswers,
    answer_from,
    record_answers,
    record_mismatches,
    record_reversals,
    request_lease,
    request_pool,
    reversal_from,
    send_all,
)
from ledger.models import Charge
from ledger.provider_account.close import sent_to
from ledger.provider_account.compare import OPEN as OPEN_STATE
from ledger.provider_account.compare import Ours, compare
from providers import default_provider_name, get_provider, provider_names
from providers.base import LookupResult, Outcome, Provider, ProviderError

logger = logging.getLogger(__name__)


def charges_to_redispatch(*, limit: int = 5000) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT id FROM ledger_charge
             WHERE stage = '{RESERVED}' AND reserved_at < clock_timestamp() - make_interval(secs => %s)
             ORDER BY id LIMIT %s""",
            [settings.PROVIDER_REDISPATCH_AFTER, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def charges_reserved_of_shard(
    *, shard: int, shards: int, reserved_before: float | None = None, limit: int = 5000
) -> list[int]:
    """The reserved charges (not yet claimed for sending) of one shard's sellers, `seller_id % shards
    = shard` (workers/routing.py), reserved before `reserved_before` (epoch seconds; None: any),
    however recently: for the shard worker's recovery, since the process that reserved them may
    have died between its commit and its publish of their send. Read through the partial index of
    open holds (charge_open_idx)."""
    before = "" if reserved_before is None else "AND reserved_at < to_timestamp(%s)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT id FROM ledger_charge
             WHERE stage = '{RESERVED}' AND seller_id %% %s = %s {before}
             ORDER BY id LIMIT %s""",
            [shards, shard, *([] if reserved_before is None else [reserved_before]), limit],
        )
        return [row[0] for row in cursor.fetchall()]


@dataclass
class LookupRun:
    checked: int = 0
    answered: int = 0  # final answers recorded, from lookups and resends
    resent: int = 0
    unreachable: int = 0


def look_up_open_charges(*, limit: int = 500) -> LookupRun:
    """Look up the submitted and unknown charges whose next check is due, each at the provider it
    was sent to, and send again there those the provider has no record of (the module docstring).
    A charge sent to a provider no longer configured waits, held, until it is configured again."""
    run = LookupRun()
    default = default_provider_name()
    for name in provider_names():
        at = _look_up_at(get_provider(name), [name, ""] if name == default else [name], limit=limit)
        run.checked, run.answered = run.checked + at.checked, run.answered + at.answered
        run.resent, run.unreachable = run.resent + at.resent, run.unreachable + at.unreachable
    return run


def _look_up_at(provider: Provider, names: list[str], *, limit: int) -> LookupRun:
    """The lookups and resends of the charges sent to one provider (`names`: its name, and "" for
    the default one: charges sent before routing)."""
    run = LookupRun()
    gate = gate_for(provider.name)
    if not _any_due(names):
        return run  # before allow(): a half-open breaker's one trial is not spent on nothing
    trial = _half_open(gate)  # read first: whether allow() admits this run as the breaker's trial
    if not gate.allow():
        return run  # the provider is down: lookups wait with everything else
    due = _take_due(limit, names)
    if not due:
        return run  # another reconciler took them first

    def look_up(asked: Asked) -> LookupResult | None:
        try:
            return provider.lookup(asked.external_id)
        except ProviderError:
            return None

    answers, mismatched, pending, unreachable, missing, reversals = [], [], [], [], [], []
    for asked, found in zip(due, request_pool().map(look_up, due), strict=True):
        run.checked += 1
        if found is None:
            unreachable.append(asked.charge_id)
        elif found.found and (why := mismatch(asked, found)):
            mismatched.append((asked, why, found))
        elif found.found and found.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            answers.append(answer_from(asked, found))
        elif found.found and found.outcome is Outcome.REVERSED:
            reversals.append(reversal_from(asked, found))  # completed and reversed: nothing delivered
        elif found.found:
            pending.append(asked.charge_id)  # the provider is still at it
        else:
            missing.append(asked)  # no record: send it again, under the same id
    run.answered = record_answers(answers) + len(record_reversals(reversals).sellers)
    record_mismatches(mismatched)
    pending += [asked.charge_id for asked, _, _ in mismatched]
    _check_later(pending, first=settings.PROVIDER_LOOKUP_AFTER, most=settings.PROVIDER_LOOKUP_BACKOFF_MAX)
    _check_soon(unreachable)
    run.unreachable = len(unreachable)
    resent = _send_again(provider, gate, missing)
    run.resent, run.answered = resent.sent, run.answered + resent.recorded
    # The breaker hears the provider's health from the reconciler as from the sends, with two
    # differences: it is alive when anything was answered (a lookup too), so one charge it never
    # answers does not count against it while it answers the rest; and a success closes a
    # half-open breaker (after an outage, the lookups are often the first to reach the provider)
    # but never clears the failures the sends are counting while it is closed.
    answered = run.checked - run.unreachable + resent.sent - len(resent.unknown) - len(resent.retry) + resent.throttled
    if not answered:
        gate.record_failure()
    elif trial:
        gate.record_success()
    if run.answered or run.unreachable or run.resent:
        logger.info(
            "reconciler looked up %s charges: %s answered, %s sent again, %s unreachable",
            run.checked,
            run.answered,
            run.resent,
            run.unreachable,
            extra={"event": "ledger.provider_lookups", **run.__dict__},
        )
    return run


def _half_open(gate: ProviderGate) -> bool:
    try:
        return gate.breaker_state() == "half-open"
    except redis.RedisError:
        return False  # allow() refuses then too


# The due condition of the reconciler's reads: charge_check_due_idx's predicate, its key bounded by
# a stable function (statement_timestamp(), not clock_timestamp(), so the bound is an index condition
# and a read walks only the due entries, not the whole index).
DUE_SQL = f"stage IN {SENT_SQL} AND outcome IS NULL AND next_check_at <= statement_timestamp()"


def _any_due(names: list[str]) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM ledger_charge WHERE {DUE_SQL} AND provider = ANY(%s))",
            [names],
        )
        return cursor.fetchone()[0]


def _take_due(limit: int, names: list[str]) -> list[Asked]:
    """The open sent charges whose check is due, each taken by pushing its next check past the
    time a lookup and a resend can take: two reconcilers running at once (beat's interval is
    shorter than a slow run) never take the same charge, and one that dies leaves them due again."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE ledger_charge SET next_check_at = clock_timestamp() + make_interval(secs => %s)
             WHERE id IN (SELECT id FROM ledger_charge
                           WHERE {DUE_SQL} AND provider = ANY(%s)
                           ORDER BY next_check_at LIMIT %s FOR UPDATE SKIP LOCKED)
             RETURNING {ASKED_COLUMNS}""",
            [request_lease(), names, limit],
        )
        return [Asked(*row) for row in sorted(cursor.fetchall())]


def _send_again(provider: Provider, gate: ProviderGate, missing: list[Asked]) -> SentAnswers:
    """Send again, under the same external id, charges the provider has no record of; those the
    rate limit does not let through now are looked up again soon."""
    if not missing:
        return SentAnswers()
    granted = gate.take(len(missing))
    _check_soon([asked.charge_id for asked in missing[granted:]])
    taken = [Asked(*row) for row in lifecycle.resend([a.charge_id for a in missing[:granted]], lease=request_lease())]
    if not taken:
        return SentAnswers()
    sorted_ = SentAnswers.of(send_all(provider, taken))
    if sorted_.retry_after:
        gate.pause(sorted_.retry_after)
    sorted_.recorded = record_answers(sorted_.answers)
    lifecycle.mark_pending(sorted_.pending)
    _check_later(
        [charge for charge, _ in sorted_.pending],
        first=settings.PROVIDER_LOOKUP_AFTER,
        most=settings.PROVIDER_LOOKUP_BACKOFF_MAX,
    )
    record_mismatches(sorted_.mismatched)
    # Not processed this time, or lost again: the earlier attempts' fate is still unknown.
    lost = sorted_.unknown + sorted_.retry
    lifecycle.mark_unknown(lost, check_after=settings.PROVIDER_RESEND_AFTER)
    _check_soon(lost)
    logger.info(
        "sent again %s charges the provider had no record of: %s answered, %s still unknown",
        len(taken),
        sorted_.recorded,
        len(lost),
        extra={"event": "ledger.provider_resent", "charge_ids": [a.charge_id for a in taken][:100]},
    )
    return sorted_


def _check_soon(charge_ids: list[int]) -> None:
    """The short schedule of a charge whose fate is unknown (a lost answer, an unreachable lookup)."""
    _check_later(charge_ids, first=settings.PROVIDER_RESEND_AFTER, most=settings.PROVIDER_RESEND_BACKOFF_MAX)


def _check_later(charge_ids: list[int], *, first: float, most: float) -> None:
    if not charge_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_charge SET checks = checks + 1,
                   next_check_at = clock_timestamp() + make_interval(secs => least(%s, %s * power(2, checks)))
             WHERE id = ANY(%s) AND outcome IS NULL""",
            [most, first, charge_ids],
        )


def open_charges_report() -> dict:
    """Charges holding credit, by stage, with the oldest of each; how many sent charges the provider
    has no answer for yet were sent more than once (`resending`), and how many of those or of the
    unknowns were first sent over PROVIDER_UNKNOWN_ALERT_AFTER ago (`unknown_overdue`); how many
    are held on a provider mismatch (ops/queues, metrics). Read through the open-holds index."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT stage, count(*), extract(epoch FROM clock_timestamp() - min(reserved_at)),
                      count(*) FILTER (WHERE (stage = '{UNKNOWN}' OR sends > 1)
                                       AND submitted_at < clock_timestamp() - make_interval(secs => %s)),
                      count(*) FILTER (WHERE stage IN {SENT_SQL} AND sends > 1 AND outcome IS NULL)
                 FROM ledger_charge WHERE stage IN {OPEN_SQL} GROUP BY stage""",
            [settings.PROVIDER_UNKNOWN_ALERT_AFTER],
        )
        rows = {
            stage: (n, float(age or 0), overdue, resending) for stage, n, age, overdue, resending in cursor.fetchall()
        }
        cursor.execute(
            f"""SELECT count(*) FROM ledger_providermismatch m JOIN ledger_charge c ON c.id = m.charge_id
             WHERE c.stage IN {OPEN_SQL}"""
        )
        mismatches = cursor.fetchone()[0]
    return {
        "charges": {stage.value: rows.get(stage, (0,))[0] for stage in OPEN},
        "oldest_age_seconds": {stage.value: round(rows.get(stage, (0, 0.0))[1], 3) for stage in OPEN},
        "resending": sum(row[3] for row in rows.values()),
        "unknown_overdue": sum(row[2] for row in rows.values()),
        "provider_mismatches": mismatches,
    }


@dataclass
class WindowReport:
    matched: int = 0
    missing_at_provider: list[int] = field(default_factory=list)  # our succeeded charges it has not
    missing_here: list[str] = field(default_factory=list)  # its completed top-ups we did not succeed
    amount_mismatches: list[tuple[int, int, int]] = field(default_factory=list)  # (charge, ours, theirs)

    @property
    def clean(self) -> bool:
        return not (self.missing_at_provider or self.missing_here or self.amount_mismatches)


def provider_window(*, since: datetime, until: datetime | None = None, provider: str | None = None) -> WindowReport:
    """Our charges created in [since, until) against the provider's transactions of the window
    (ledger/provider_account/compare.py): each succeeded charge must be one completed top-up of the
    same amount, and each completed top-up one succeeded charge. A charge still open is left out
    (it is not final yet); a reversed top-up is missing at the provider."""
    until = until or timezone.now()
    adapter = get_provider(provider)
    rows = Charge.objects.filter(
        sent_to(adapter.name), created_at__gte=since, created_at__lt=until, external_id__isnull=False
    )
    asked = Coalesce("destination_amount", "amount")  # what the provider was asked to deliver
    ours = {
        external_id: Ours(charge_id, status if status in (SUCCEEDED, FAILED) else OPEN_STATE, amount)
        for charge_id, external_id, status, amount in rows.values_list("id", "external_id", "status", asked)
    }
    found = compare(ours, adapter.transactions(created_after=since, created_before=until), prefix=external_id_prefix())
    reversed_here = [charge_id for charge_id, _, state, _ in found.reversals if state == SUCCEEDED]
    return WindowReport(
        matched=found.matched,
        missing_at_provider=sorted(found.missing_at_provider + reversed_here),
        missing_here=found.missing_here,
        amount_mismatches=found.amount_mismatches,
    )
