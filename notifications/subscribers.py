"""What the notifications do with the ledger's events (`ledger.events`; subscribed in
`settings.LEDGER_EVENT_SUBSCRIBERS`): each records the seller's public event in the outbox, in
the transaction of the change it describes, so the event commits exactly when the change does.
Delivery (the webhook fan-out, the stream) then reads the outbox; the ledger knows none of it."""

from notifications.models import Event
from notifications.outbox import event_record, events_enabled, settled_events_insert


def intents_settled(*, now, intents: list[tuple], balances: list[tuple]) -> None:
    """`charge.succeeded`, `charge.failed`, `deposit.approved` and `balance.low` of one settle batch."""
    settled_events_insert(now=now, intents=intents, balances=balances)


def batch_completed(*, seller_id: int, batch_id: int, status: str, succeeded: int, failed: int) -> None:
    if events_enabled():
        event_record(
            seller_id=seller_id,
            type=Event.Type.BATCH_COMPLETED,
            data={"batch_id": batch_id, "status": status, "succeeded": succeeded, "failed": failed},
        )


def deposit_rejected(*, seller_id: int, deposit_id: int, amount: int, reason: str) -> None:
    event_record(
        seller_id=seller_id,
        type=Event.Type.DEPOSIT_REJECTED,
        data={"deposit_id": deposit_id, "amount": amount, "status": "rejected", "reason": reason},
    )


def statement_ready(*, seller_id: int, statement_id: int, period_start, period_end) -> None:
    event_record(
        seller_id=seller_id,
        type=Event.Type.STATEMENT_READY,
        data={
            "statement_id": statement_id,
            "period_start": period_start.isoformat(),
            "period_end": period_end.isoformat(),
            "url": f"/api/v1/statements/{statement_id}/",
        },
    )
