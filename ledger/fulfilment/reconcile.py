"""Resolving what the fulfilment workers could not: the reconciler (beat, on the fulfil queue).

- Charges reserved but not sent for PROVIDER_REDISPATCH_AFTER seconds (a lost publish, a worker
  killed before it claimed them) are sent again. A shard worker's recovery on (re)connect sends
  its shards' reserved charges at once (`charges_reserved_of_shard`): a shard worker killed
  between its settle's commit and its publish loses the send of what that settle reserved.
- Charges `submitted` (pending at the provider, or a worker killed between its claim and its
  record) or `unknown` are looked up by external id when their `next_check_at` comes, with
  exponential backoff. A final status is recorded as the answer. "Not found" is taken as "never
  processed" only once PROVIDER_GRACE has passed since the charge was sent (longer than any
  request can be in flight), and then fails it `provider_timeout`, releasing the hold. A found
  transaction that is not the one we asked for is a mismatch (ledger/fulfilment/identity.py): the
  charge stays held for an admin, and is never timed out.
- `provider_window` compares our charges with the provider's own record over a time window
  (`manage.py reconcile_provider`)."""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from ledger.charge_lifecycle import (
    ASKED_COLUMNS,
    FAILED,
    OPEN,
    OPEN_SQL,
    RESERVED,
    SENT_SQL,
    SUCCEEDED,
    UNKNOWN,
    Answer,
)
from ledger.fulfilment.gate import gate_for
from ledger.fulfilment.identity import Asked, external_id_prefix, mismatch
from ledger.fulfilment.service import answer_from, record_answers, record_mismatches, request_pool
from ledger.models import Charge
from ledger.provider_account.compare import OPEN as OPEN_STATE
from ledger.provider_account.compare import Ours, compare
from providers import get_provider
from providers.base import LookupResult, Outcome, ProviderError

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
    answered: int = 0
    timed_out: int = 0
    unreachable: int = 0


def look_up_open_charges(*, limit: int = 500) -> LookupRun:
    """Look up the submitted and unknown charges whose next check is due."""
    run = LookupRun()
    provider = get_provider()
    if not gate_for(provider.name).allow():
        return run  # the provider is down: lookups wait with everything else
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT {ASKED_COLUMNS},
                      c.submitted_at < clock_timestamp() - make_interval(secs => %s)
                      AND NOT EXISTS (SELECT 1 FROM ledger_providermismatch m WHERE m.charge_id = c.id)
                 FROM ledger_charge c
             WHERE c.stage IN {SENT_SQL} AND c.outcome IS NULL AND c.next_check_at <= clock_timestamp()
             ORDER BY c.next_check_at LIMIT %s""",
            [settings.PROVIDER_GRACE, limit],
        )
        due = [(Asked(*row[:-1]), row[-1]) for row in cursor.fetchall()]
    if not due:
        return run

    def look_up(asked: Asked) -> LookupResult | None:
        try:
            return provider.lookup(asked.external_id)
        except ProviderError:
            return None

    answers, later, mismatched = [], [], []
    for (asked, past_grace), found in zip(due, request_pool().map(look_up, [a for a, _ in due]), strict=True):
        run.checked += 1
        if found is None:
            run.unreachable += 1
            later.append(asked.charge_id)
        elif found.found and (why := mismatch(asked, found)):
            mismatched.append((asked, why, found))
            later.append(asked.charge_id)
        elif found.found and found.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            answers.append(answer_from(asked, found))
        elif not found.found and past_grace:
            answers.append(Answer(asked.charge_id, FAILED, Charge.FailureCode.PROVIDER_TIMEOUT))
            run.timed_out += 1
        else:
            later.append(asked.charge_id)  # pending at the provider, or not found yet
    run.answered = record_answers(answers)
    record_mismatches(mismatched)
    _check_later(later)
    if run.answered or run.unreachable:
        logger.info(
            "reconciler looked up %s charges: %s answered (%s timed out), %s unreachable",
            run.checked,
            run.answered,
            run.timed_out,
            run.unreachable,
            extra={"event": "ledger.provider_lookups", **run.__dict__},
        )
    return run


def _check_later(charge_ids: list[int]) -> None:
    if not charge_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE ledger_charge SET checks = checks + 1,
                   next_check_at = clock_timestamp() + make_interval(secs => least(%s, %s * power(2, checks)))
             WHERE id = ANY(%s) AND outcome IS NULL""",
            [settings.PROVIDER_LOOKUP_BACKOFF_MAX, settings.PROVIDER_LOOKUP_AFTER, charge_ids],
        )


def open_charges_report() -> dict:
    """Charges holding credit, by stage, with the oldest of each, how many unknowns are older than
    PROVIDER_UNKNOWN_ALERT_AFTER and how many are held on a provider mismatch (ops/queues, metrics).
    Read through the open-holds index."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT stage, count(*), extract(epoch FROM clock_timestamp() - min(reserved_at)),
                      count(*) FILTER (WHERE stage = '{UNKNOWN}'
                                       AND submitted_at < clock_timestamp() - make_interval(secs => %s))
                 FROM ledger_charge WHERE stage IN {OPEN_SQL} GROUP BY stage""",
            [settings.PROVIDER_UNKNOWN_ALERT_AFTER],
        )
        rows = {stage: (n, float(age or 0), overdue) for stage, n, age, overdue in cursor.fetchall()}
        cursor.execute(
            f"""SELECT count(*) FROM ledger_providermismatch m JOIN ledger_charge c ON c.id = m.charge_id
             WHERE c.stage IN {OPEN_SQL}"""
        )
        mismatches = cursor.fetchone()[0]
    return {
        "charges": {stage.value: rows.get(stage, (0, 0.0, 0))[0] for stage in OPEN},
        "oldest_age_seconds": {stage.value: round(rows.get(stage, (0, 0.0, 0))[1], 3) for stage in OPEN},
        "unknown_overdue": rows.get(UNKNOWN, (0, 0.0, 0))[2],
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


def provider_window(*, since: datetime, until: datetime | None = None) -> WindowReport:
    """Our charges created in [since, until) against the provider's transactions of the window
    (ledger/provider_account/compare.py): each succeeded charge must be one completed top-up of the
    same amount, and each completed top-up one succeeded charge. A charge still open is left out
    (it is not final yet); a reversed top-up is missing at the provider."""
    until = until or timezone.now()
    rows = Charge.objects.filter(created_at__gte=since, created_at__lt=until, external_id__isnull=False)
    ours = {
        external_id: Ours(charge_id, status if status in (SUCCEEDED, FAILED) else OPEN_STATE, amount)
        for charge_id, external_id, status, amount in rows.values_list("id", "external_id", "status", "amount")
    }
    found = compare(
        ours, get_provider().transactions(created_after=since, created_before=until), prefix=external_id_prefix()
    )
    reversed_here = [charge_id for charge_id, _, state, _ in found.reversals if state == SUCCEEDED]
    return WindowReport(
        matched=found.matched,
        missing_at_provider=sorted(found.missing_at_provider + reversed_here),
        missing_here=found.missing_here,
        amount_mismatches=found.amount_mismatches,
    )
