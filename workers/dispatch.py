"""The only places that enqueue. Always after commit: a worker must never wake up before the
intent it should settle is visible, and a rolled-back request must enqueue nothing."""

from functools import partial

from django.db import transaction

from workers.routing import queue_for

# Fail fast when Redis is away: a wake-up is only a hint, the sweeper re-sends it, and a request
# must not hang on the broker.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def wake_seller(seller_id: int) -> None:
    from workers.tasks import settle_seller_task

    settle_seller_task.apply_async(
        kwargs={"seller_id": seller_id}, queue=queue_for(seller_id), retry_policy=PUBLISH_RETRY_POLICY
    )


def wake_seller_on_commit(seller_id: int) -> None:
    """Wake the seller's worker once the current transaction commits; one wake-up per seller per
    transaction is enough, however many intents it recorded. Django drops callbacks of rolled-back
    (save)points, so a rolled-back intent enqueues nothing."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(
        getattr(callback, "ledger_seller_id", None) == seller_id for _, callback, *_ in connection.run_on_commit
    ):
        return
    send = partial(wake_seller, seller_id)
    send.ledger_seller_id = seller_id  # type: ignore[attr-defined]
    # robust: once the intent is committed, a broker outage must not turn the request into an
    # error. The intent stays queued and the sweeper wakes its seller later.
    transaction.on_commit(send, robust=True)
