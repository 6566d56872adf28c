"""Which provider a charge is sent to, and when it may move to another.

A product we sell can be delivered by several providers (catalog.models.ProductRoute: each
provider's own product, by priority); one without routes goes to its own provider when that is
configured, else to the default one (providers.default_provider_name). A charge goes to its first
route whose provider is not known to refuse it now, and is fixed there when claimed
(`charge_lifecycle.claim_for_sending` records the provider, its product and its cost).

It moves to the next route (`charge_lifecycle.reroute`, under an external id the next provider
never saw) ONLY when its provider refused it *before processing*:
- a refusal about our account there: `insufficient_balance` (the provider is then skipped by
  every charge until its polled float recovers: floats.provider_float_refused) or
  `product_unavailable` (withdrawn there);
- the provider unavailable: an answer certainly not processed (RETRY: 503, 429, refused
  connection), or its breaker open;
and never after an unknown outcome (those are resent under the same id to the same provider by the
reconciler), never after a decline about the number or the operator (no refusal: the charge
fails), never from a lookup's or a callback's answer. A charge whose routes are used up stays at
its last provider: a RETRY waits there, a refusal fails it with the refusal's code."""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import redis
from django.db import connection

from catalog.pricing import cost_of
from core.db.prepared import PreparedStatement, array_literal
from ledger import charge_lifecycle as lifecycle
from ledger.charge_lifecycle import FAILED, RESERVED
from ledger.fulfilment.gate import gate_for
from ledger.models import Charge, ChargeRouteMove
from ledger.provider_account.floats import provider_float_ok, provider_float_refused
from providers import default_provider_name, provider_names

logger = logging.getLogger(__name__)

Reason = ChargeRouteMove.Reason
# The failure codes of the refusals a charge may move on after (service.REFUSAL_FAILURE_CODES).
REFUSAL_CODES = {
    Reason.INSUFFICIENT_BALANCE: Charge.FailureCode.PROVIDER_INSUFFICIENT_BALANCE.value,
    Reason.PRODUCT_UNAVAILABLE: Charge.FailureCode.PRODUCT_UNAVAILABLE.value,
}


@dataclass(frozen=True)
class Route:
    provider: str
    served_by: int | None = None  # that provider's product (None: the charge's own product)
    cost: int | None = None  # what it charges for this charge (None: the charge's recorded cost)


@dataclass
class Planned:
    """A reserved charge and where it goes now; `later`: the routes it may move to, in order."""

    charge_id: int
    route: Route
    later: list[Route] = field(default_factory=list)


class Availability:
    """Whether a provider may be sent to now, asked once per provider per plan."""

    def __init__(self):
        self._known: dict[str, str | None] = {}

    def refusal(self, provider: str) -> str | None:
        """None when the provider may be tried; else the reason it may not."""
        if provider not in self._known:
            self._known[provider] = self._ask(provider)
        return self._known[provider]

    @staticmethod
    def _ask(provider: str) -> str | None:
        if not provider_float_ok(provider):
            return Reason.INSUFFICIENT_BALANCE
        try:
            if gate_for(provider).breaker_state() == "open":
                return Reason.UNAVAILABLE
        except redis.RedisError:
            return None  # nothing is sent while Redis is away anyway (the gate refuses)
        return None


def plan(charge_ids: list[int]) -> dict[str, list[Planned]]:
    """The reserved charges among `charge_ids`, by the provider each is sent to now. A charge
    already at a provider that is known to refuse (its float refused, its breaker open) moves
    to its next route here, when it has one."""
    rows = _reserved(charge_ids)
    if not rows:
        return {}
    configured, default = set(provider_names()), default_provider_name()
    available = Availability()
    planned, moves = [], []
    for charge_id, current, amount, own_provider, refused, routes in rows:
        candidates = [
            Route(provider, served_by, _cost(terms, amount))
            for provider, served_by, *terms in routes or []
            if provider in configured
        ] or [Route(own_provider if own_provider in configured else default)]
        candidates = [route for route in candidates if route.provider not in refused]
        if current:
            at = next((i for i, route in enumerate(candidates) if route.provider == current), None)
            here = candidates[at] if at is not None else Route(current)
            later = candidates[at + 1 :] if at is not None else [r for r in candidates if r.provider != current]
            why = available.refusal(current) if later else None
            if why is None:
                planned.append(Planned(charge_id, here, later))
                continue
            target = _first_available(later, available) or later[0]
            moves.append((charge_id, current, why, target))
            continue
        if not candidates:  # every route refused it already: its last provider's answer stands
            candidates = [Route(default)]
        if len(candidates) == 1:
            planned.append(Planned(charge_id, candidates[0]))
            continue
        first = _first_available(candidates, available) or candidates[0]
        planned.append(Planned(charge_id, first, candidates[candidates.index(first) + 1 :]))
    if moves:
        moved = set(move(moves))
        # Moved charges are reserved at their next provider: plan them again, which sends them.
        planned += [p for group in plan(sorted(moved)).values() for p in group]
    by_provider: dict[str, list[Planned]] = defaultdict(list)
    for one in planned:
        by_provider[one.route.provider].append(one)
    return dict(by_provider)


def move(moves: list[tuple[int, str, str, Route]]) -> list[int]:
    """Move charges to their next route: (charge, the provider that refused, why, the next route)."""
    moved = lifecycle.reroute(
        [(charge, refused_by, str(why), to.provider, to.served_by, to.cost) for charge, refused_by, why, to in moves]
    )
    if moved:
        logger.warning(
            "%s charges moved to their next provider after a refusal before processing",
            len(moved),
            extra={
                "event": "ledger.provider_failover",
                "moves": [(charge, refused_by, str(why), to.provider) for charge, refused_by, why, to in moves][:100],
            },
        )
    return moved


def fail_over(provider: str, planned: list[Planned], reason: str) -> list[int]:
    """Move to their next route the charges of `planned` that have one: `provider` refused them
    before processing (`reason`). Answers those moved; the others stay where they are."""
    available = Availability()
    moves = [
        (one.charge_id, provider, reason, _first_available(one.later, available) or one.later[0])
        for one in planned
        if one.later
    ]
    return move(moves) if moves else []


def after_refusals(provider: str, planned: list[Planned], sent) -> list[int]:
    """After a batch of sends (service.SentAnswers): a refusal about our account there, or an
    answer certainly not processed, moves the charge to its next route when it has one, instead
    of failing it or sending it there again; those moved leave `sent`. An insufficient balance
    also stops routing to this provider until its float recovers, whether or not a charge moved.
    Never an unknown outcome, never a decline (no refusal), never a mismatch."""
    refusals = {code: reason for reason, code in REFUSAL_CODES.items()}
    if any(answer.failure_code == REFUSAL_CODES[Reason.INSUFFICIENT_BALANCE] for answer in sent.answers):
        provider_float_refused(provider)
        logger.warning(
            "provider %s refused a top-up for insufficient balance: skipped by routing until its float recovers",
            provider,
            extra={"event": "ledger.provider_float_refused", "provider": provider},
        )
    with_later = {one.charge_id: one for one in planned if one.later}
    refused = [
        (answer.charge_id, refusals[answer.failure_code])
        for answer in sent.answers
        if answer.outcome == FAILED and answer.failure_code in refusals and answer.charge_id in with_later
    ]
    unavailable = [(charge, Reason.UNAVAILABLE) for charge in sent.retry if charge in with_later]
    moved: list[int] = []
    for reason in {why for _, why in refused + unavailable}:
        moved += fail_over(provider, [with_later[c] for c, why in refused + unavailable if why == reason], reason)
    gone = set(moved)
    sent.answers = [answer for answer in sent.answers if answer.charge_id not in gone]
    sent.retry = [charge for charge in sent.retry if charge not in gone]
    return sorted(moved)


def _first_available(candidates: list[Route], available: Availability) -> Route | None:
    return next((route for route in candidates if available.refusal(route.provider) is None), None)


def _cost(terms: list, amount: int) -> int | None:
    """What a route's provider charges for `amount`: its product's current version's cost."""
    kind, cost, cost_rate = terms
    if kind is None:
        return None  # no version yet: the charge keeps the cost it was recorded with
    return cost_of(kind, cost, None if cost_rate is None else Decimal(cost_rate), amount)


# Prepared (core/db/prepared.py): one per task, often for a single charge, and planning it cost
# PostgreSQL more than running it.
_RESERVED_WITH_ROUTES = PreparedStatement(
    "ledger_fulfil_reserved_with_routes",
    f"""SELECT c.id, c.provider, coalesce(c.destination_amount, c.amount), p.provider,
              CASE WHEN c.route_moves > 0 THEN ARRAY(SELECT m.provider FROM ledger_chargeroutemove m
                                                     WHERE m.charge_id = c.id) ELSE '{{}}' END,
              (SELECT json_agg(json_build_array(sp.provider, sp.id, v.kind, v.cost, v.cost_rate::text)
                               ORDER BY r.priority)
                 FROM catalog_productroute r
                 JOIN catalog_product sp ON sp.id = r.served_by_id
                 LEFT JOIN catalog_productversion v ON v.id = sp.current_version_id
                WHERE r.product_id = c.product_id AND r.enabled AND sp.enabled AND sp.withdrawn_at IS NULL)
         FROM ledger_charge c LEFT JOIN catalog_product p ON p.id = c.product_id
        WHERE c.id = ANY($1) AND c.{lifecycle.stage_in(RESERVED)} ORDER BY c.id""",
    ["bigint[]"],
)


def _reserved(charge_ids: list[int]) -> list[tuple]:
    """(charge, provider so far, destination amount, its product's provider, providers that refused
    it before, its product's routes), for the reserved ones, by id, in one statement. A route:
    [provider, its product, its version's kind, cost and cost rate (text: exact)], by priority,
    only enabled ones to products still on sale there."""
    with connection.cursor() as cursor:
        _RESERVED_WITH_ROUTES.execute(cursor, [array_literal(charge_ids)])
        return cursor.fetchall()
