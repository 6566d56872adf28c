"""Writes of the notifications API: webhook endpoints, test events, redeliveries, settings.

Each is one short transaction; work that calls out (sending) is enqueued on commit."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.models import Seller
from notifications.errors import EndpointUrlRefusedError
from notifications.models import Event, SellerFeed, WebhookDelivery, WebhookEndpoint
from notifications.outbox import event_record
from notifications.signing import secret_generate
from notifications.urlsafety import url_problem


def _check_url(url: str) -> None:
    problem = url_problem(url)
    if problem:
        raise EndpointUrlRefusedError(problem)


def _current_seq(seller_id: int) -> int:
    return SellerFeed.objects.filter(seller_id=seller_id).values_list("last_seq", flat=True).first() or 0


def _deliver_on_commit(endpoint_id: int) -> None:
    from notifications.tasks import deliver_soon  # the Celery side; enqueued only after commit

    transaction.on_commit(lambda: deliver_soon(endpoint_id), robust=True)


@transaction.atomic
def endpoint_create(*, seller: Seller, url: str, event_types: list[str]) -> WebhookEndpoint:
    """From now on: the endpoint receives the events after the seller's current last one."""
    _check_url(url)
    return WebhookEndpoint.objects.create(
        seller=seller,
        url=url,
        event_types=sorted(set(event_types)),
        secret=secret_generate(),
        fanned_seq=_current_seq(seller.pk),
    )


@transaction.atomic
def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    event_types: list[str] | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if url is not None:
        _check_url(url)
        endpoint.url = url
    if event_types is not None:
        endpoint.event_types = sorted(set(event_types))
    if enabled is True and not endpoint.enabled:
        # Re-enabled: it resumes with new events, without a flood of those it missed (which
        # the feed still holds, and a redelivery can send).
        endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since = True, "", None
        endpoint.fanned_seq = _current_seq(endpoint.seller_id)
    elif enabled is False:
        endpoint.enabled, endpoint.disabled_reason = False, "Disabled by the seller."
    endpoint.save()
    return endpoint


def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the old one keeps signing too for WEBHOOK_SECRET_OVERLAP seconds."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + timedelta(seconds=settings.WEBHOOK_SECRET_OVERLAP)
    endpoint.secret = secret_generate()
    endpoint.save()
    return endpoint


@transaction.atomic
def endpoint_send_test(*, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event in the seller's feed, delivered to this endpoint only."""
    event_id = event_record(seller_id=endpoint.seller_id, type=Event.Type.TEST, data={"endpoint_id": endpoint.pk})
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event_id=event_id, next_attempt_at=timezone.now(), created_at=timezone.now()
    )
    _deliver_on_commit(endpoint.pk)
    return delivery


@transaction.atomic
def delivery_redeliver(*, delivery: WebhookDelivery) -> WebhookDelivery:
    """Send again, with a fresh retry schedule (same `webhook-id`: receivers dedupe it)."""
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
    )
    _deliver_on_commit(delivery.endpoint_id)
    delivery.refresh_from_db()
    return delivery


@transaction.atomic
def feed_settings_update(*, seller: Seller, low_balance_threshold: int | None) -> SellerFeed:
    feed, _ = SellerFeed.objects.get_or_create(seller=seller)
    SellerFeed.objects.filter(pk=feed.pk).update(low_balance_threshold=low_balance_threshold)
    feed.refresh_from_db()
    return feed
