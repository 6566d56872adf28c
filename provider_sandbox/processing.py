"""One top-up request through the sandbox, whatever its dialect: the decision (outcomes.py), the
balance it draws, the record (store.py), and what happens to it later (a pending one completes, a
reversed one is reversed, callbacks). A dialect validates the request into a TopUp, calls
`process`, and answers what it returns in its own shape; Gate and InsufficientBalance it answers
with its own errors; Drop closes the connection."""

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime

from provider_sandbox.errors import Drop
from provider_sandbox.outcomes import COMPLETED, DECLINED, SUBMITTED, Decision, decide

# DT One's status message for each of the sandbox's decline reasons.
DECLINE_DETAILS = {"invalid_number": "DECLINED-INVALID-CREDIT-PARTY", "operator_declined": "DECLINED"}


class Gate(Exception):
    """Answered before processing: 429 (throttled) or 503 (unavailable)."""

    def __init__(self, status: int):
        self.status = status


class InsufficientBalance(Exception):
    """The account's available balance does not cover the top-up's cost: nothing recorded."""


@dataclass(frozen=True)
class TopUp:
    dialect: str
    external_id: str
    msisdn: str
    amount: int  # what the number receives, in the smallest unit of `currency`
    callback_url: str | None = None
    product_id: str | None = None
    currency: str | None = None
    cost: int = 0  # what the account pays, in the smallest unit of the account's currency
    extra: dict = field(default_factory=dict)
    confirm: bool = True  # DT One's auto_confirm; False leaves the transaction CREATED


async def process(app, top_up: TopUp) -> tuple[dict, bool]:
    """The transaction for the request and whether this request created it (False: the id was
    already recorded; the dialect answers a replay in its own way). Raises Gate,
    InsufficientBalance or Drop."""
    app.attempts[top_up.external_id] += 1
    decision = decide(
        app.config, external_id=top_up.external_id, msisdn=top_up.msisdn, attempt=app.attempts[top_up.external_id]
    )
    if decision.gate:
        raise Gate(decision.gate)
    if decision.hang or decision.late:
        await asyncio.sleep(app.config.hang_seconds)
        if decision.late:  # the provider finished it after all, as the caller gave up
            try:
                record(app, top_up, Decision())
            except InsufficientBalance:
                pass  # then it did not happen after all
        raise Drop()
    existing = app.store.by_external_id(top_up.external_id)
    if existing is not None:
        return existing, False
    if not top_up.confirm:
        return created_only(app, top_up), True
    row = record(app, top_up, decision)
    if decision.drop:
        raise Drop()
    return row, True


def record(app, top_up: TopUp, decision: Decision) -> dict:
    """Draws the cost (a decline costs nothing) and records the transaction as decided."""
    status, code = decision.status, decision.failure_code
    drawn = top_up.cost if status != DECLINED else 0
    if drawn and not app.store.draw(drawn):
        raise InsufficientBalance()
    reverse = decision.reverse and status == COMPLETED
    row, created = app.store.insert(
        external_id=top_up.external_id,
        msisdn=top_up.msisdn,
        amount=top_up.amount,
        status=status,
        failure_code=code,
        callback_url=top_up.callback_url,
        dialect=top_up.dialect,
        product_id=top_up.product_id,
        currency=top_up.currency,
        cost=drawn,
        status_detail=DECLINE_DETAILS.get(code, status),
        reverse_at=app.due_in(app.config.reverse_seconds) if reverse else None,
        extra=top_up.extra,
    )
    if not created:  # recorded meanwhile (a late success racing its own replay): never twice
        app.store.refund(drawn)
        return row
    follow(app, row)
    return row


def created_only(app, top_up: TopUp) -> dict:
    """DT One without auto_confirm: CREATED, its cost held, until confirmed or cancelled."""
    if top_up.cost and not app.store.draw(top_up.cost):
        raise InsufficientBalance()
    row, created = app.store.insert(
        external_id=top_up.external_id,
        msisdn=top_up.msisdn,
        amount=top_up.amount,
        status="CREATED",
        failure_code=None,
        callback_url=top_up.callback_url,
        dialect=top_up.dialect,
        product_id=top_up.product_id,
        currency=top_up.currency,
        cost=top_up.cost,
        extra=top_up.extra,
    )
    if not created:
        app.store.refund(top_up.cost)
    return row


def confirm(app, row: dict) -> dict | None:
    """CREATED → what the sandbox decides for the id now (completed, declined or submitted)."""
    app.attempts[row["external_id"]] += 1
    decision = decide(
        app.config, external_id=row["external_id"], msisdn=row["msisdn"], attempt=app.attempts[row["external_id"]]
    )
    if decision.status == DECLINED:
        moved = app.store.move(
            row["id"], frm=("CREATED",), to=DECLINED, detail=DECLINE_DETAILS[decision.failure_code],
            failure_code=decision.failure_code,
        )  # fmt: skip
    else:
        reverse = decision.reverse and decision.status == COMPLETED
        moved = app.store.move(
            row["id"], frm=("CREATED",), to=decision.status,
            reverse_at=app.due_in(app.config.reverse_seconds) if reverse else None,
        )  # fmt: skip
    if moved is not None:
        follow(app, moved)
    return moved


def follow(app, row: dict) -> None:
    """What a newly recorded or confirmed transaction sets going: its completion if it is
    pending, its reversal if one is due, else its callback now."""
    if row["status"] == SUBMITTED:
        app.spawn(complete_later(app, row, app.config.pending_seconds))
        return
    app.callback(row)
    if row["reverse_at"]:
        app.spawn(reverse_later(app, row, app.config.reverse_seconds))


async def complete_later(app, row: dict, delay: float) -> None:
    await asyncio.sleep(delay)
    completed = app.store.complete(row["id"])
    if completed is not None:
        app.callback(completed)


async def reverse_later(app, row: dict, delay: float) -> None:
    await asyncio.sleep(delay)
    reversed_ = app.store.move(row["id"], frm=(COMPLETED,), to="REVERSED")
    if reversed_ is not None:
        app.callback(reversed_)


def resume(app) -> None:
    """After a restart with --db: SUBMITTED transactions complete and due reversals happen when
    they were due."""
    now = time.time()
    for row in app.store.submitted():
        due = datetime.fromisoformat(row["created_at"]).timestamp() + app.config.pending_seconds
        app.spawn(complete_later(app, row, max(0.0, due - now)))
    for row in app.store.reversals_due():
        due = datetime.fromisoformat(row["reverse_at"]).timestamp()
        app.spawn(reverse_later(app, row, max(0.0, due - now)))
