"""Reads, always scoped by seller (staff: everything, or `?seller=`)."""

from django.db.models import QuerySet

from core.models import Seller
from notifications.models import Event, WebhookDelivery, WebhookEndpoint


def event_list(*, seller: Seller | None) -> QuerySet[Event]:
    qs = Event.objects.all()
    return qs if seller is None else qs.filter(seller=seller)


def endpoint_list(*, seller: Seller | None) -> QuerySet[WebhookEndpoint]:
    qs = WebhookEndpoint.objects.all()
    return qs if seller is None else qs.filter(seller=seller)


def delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint=endpoint).select_related("event")
