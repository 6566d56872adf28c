"""The retry schedule, Retry-After, and disabling an endpoint that fails for too long (in process:
the outcomes are recorded by the same function the worker calls)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.http import http_date

from notifications import delivery
from notifications.models import Event, WebhookDelivery, WebhookEndpoint
from notifications.outbox import event_record
from notifications.services import endpoint_create
from tests.factories import make_seller

SCHEDULE = [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]


def test_each_retry_waits_its_step_of_the_schedule_with_jitter(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = SCHEDULE
    for attempts, step in enumerate(SCHEDULE[1:], start=1):
        assert step * 0.9 <= delivery.retry_delay(attempts=attempts, retry_after=None) <= step * 1.1
    assert delivery.retry_delay(attempts=len(SCHEDULE), retry_after=None) is None


def test_retry_after_postpones_the_next_attempt_up_to_the_longest_step(settings):
    settings.WEBHOOK_RETRY_SCHEDULE = SCHEDULE
    assert delivery.retry_delay(attempts=1, retry_after=120) == 120
    assert delivery.retry_delay(attempts=1, retry_after=10**9) == 36000.0


def test_retry_after_is_read_as_seconds_or_a_date():
    class Answer:
        def __init__(self, value):
            self.headers = {"Retry-After": value}

    assert delivery.retry_after_seconds(Answer("30")) == 30.0
    in_a_minute = http_date((timezone.now() + timedelta(seconds=60)).timestamp())
    assert 55 <= delivery.retry_after_seconds(Answer(in_a_minute)) <= 61
    assert delivery.retry_after_seconds(Answer("soon")) is None


@pytest.mark.django_db
def test_an_endpoint_failing_for_five_days_is_disabled_and_the_seller_told(settings):
    settings.WEBHOOK_DISABLE_AFTER = 5 * 24 * 3600
    seller = make_seller()
    endpoint = endpoint_create(seller=seller, url="http://127.0.0.1:9/hook", event_types=[])
    event = Event.objects.get(pk=event_record(seller_id=seller.pk, type="charge.succeeded", data={}))
    row = WebhookDelivery.objects.create(
        endpoint=endpoint, event=event, next_attempt_at=timezone.now(), created_at=timezone.now(), attempts=1
    )
    failed = delivery.Outcome(row.pk, "pending", timezone.now(), 0, 500, 3, "HTTP 500")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=4))
    delivery.outcomes_record(endpoint, [failed])
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).enabled
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now() - timedelta(days=5, seconds=1))
    delivery.outcomes_record(endpoint, [failed])
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "too long" in endpoint.disabled_reason
    told = Event.objects.get(seller=seller, type="webhook_endpoint.disabled")
    assert told.data == {"endpoint_id": endpoint.pk, "url": endpoint.url, "reason": endpoint.disabled_reason}
