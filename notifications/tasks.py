"""Celery tasks of the notifications, all on their own queue (`ledger.webhooks`) so that a slow
receiver never delays settlement. One task sends one endpoint's deliveries, so a slow or dead
endpoint holds one thread of the webhook worker and delays no other endpoint."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from notifications import delivery
from notifications.models import Event, WebhookDelivery

logger = logging.getLogger(__name__)

WEBHOOK_QUEUE = "ledger.webhooks"  # also workers.routing.WEBHOOK_QUEUE, for tasks sent by name
# One task's share of an endpoint's backlog; then it hands over to a fresh task.
DELIVER_TIME_BUDGET = 20.0
# Retries due sooner than this are scheduled as a countdown; later ones wait for the sweep.
COUNTDOWN_MAX = 60.0

_transient = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 0.5, "max_retries": None}


def fan_out_on_commit(seller_ids: list[int]) -> None:
    """`NOTIFICATIONS_EVENTS_RECORDED`: called after the commit of the sellers' new events."""
    fan_out_task.apply_async(args=[seller_ids], queue=WEBHOOK_QUEUE)


def deliver_soon(endpoint_id: int, *, countdown: float | None = None) -> None:
    deliver_endpoint_task.apply_async(args=[endpoint_id], queue=WEBHOOK_QUEUE, countdown=countdown)


@shared_task(name="notifications.fan_out", ignore_result=True, acks_late=True, **_transient)
def fan_out_task(seller_ids: list[int]) -> None:
    for endpoint_id in delivery.fan_out(seller_ids=seller_ids):
        deliver_soon(endpoint_id)


@shared_task(name="notifications.deliver_endpoint", ignore_result=True, acks_late=True, **_transient)
def deliver_endpoint_task(endpoint_id: int) -> None:
    due_in = delivery.endpoint_deliver(endpoint_id=endpoint_id, time_budget=DELIVER_TIME_BUDGET)
    if due_in is not None and due_in < COUNTDOWN_MAX:
        deliver_soon(endpoint_id, countdown=due_in)


@shared_task(name="notifications.sweep", ignore_result=True)
def sweep_task() -> None:
    """Makes up for lost publishes and dead workers: fans out every lagging seller and wakes
    every endpoint with a delivery due (a retry, or a claim whose worker died)."""
    sellers = delivery.lagging_sellers()
    if sellers:
        fan_out_task.apply_async(args=[sellers], queue=WEBHOOK_QUEUE)
    for endpoint_id in delivery.endpoints_due():
        deliver_soon(endpoint_id)


@shared_task(name="notifications.prune_events", ignore_result=True)
def prune_events_task() -> None:
    """Events (and their deliveries) older than the retention; seqs are never reused (SellerFeed)."""
    cutoff = timezone.now() - timedelta(days=settings.NOTIFICATIONS_EVENT_RETENTION_DAYS)
    old = Event.objects.filter(created_at__lt=cutoff)
    WebhookDelivery.objects.filter(event__in=old).delete()
    deleted, _ = old.delete()
    logger.log(
        logging.INFO if deleted else logging.DEBUG,  # hourly: a line only when it removed something
        "pruned events",
        extra={"event": "notifications.pruned", "deleted": deleted},
    )
