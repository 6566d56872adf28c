"""Seller notifications: the event outbox, webhook endpoints and their deliveries.

Events are written only by `notifications.outbox`, in the transaction of the change they
describe. Each seller's events carry a gapless `seq` from `SellerFeed.last_seq`, whose row lock
is held to commit, so a seller's events commit in `seq` order: any snapshot sees a prefix of them,
which is what lets the webhook fan-out and the live stream resume from a number without gaps."""

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q


class SellerFeed(models.Model):
    """Per seller: the last event `seq` handed out and the seller's notification settings."""

    seller = models.OneToOneField("core.Seller", on_delete=models.CASCADE, primary_key=True, related_name="feed")
    last_seq = models.BigIntegerField(default=0)
    # `balance.low` is written when a settle takes the balance from at least this to below it.
    low_balance_threshold = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(last_seq__gte=0), name="feed_last_seq_non_negative"),
            models.CheckConstraint(
                condition=Q(low_balance_threshold__isnull=True) | Q(low_balance_threshold__gt=0),
                name="feed_low_balance_threshold_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"feed of seller {self.seller_id} at {self.last_seq}"


class Event(models.Model):
    class Type(models.TextChoices):
        DEPOSIT_APPROVED = "deposit.approved"
        DEPOSIT_REJECTED = "deposit.rejected"
        CHARGE_SUCCEEDED = "charge.succeeded"
        CHARGE_FAILED = "charge.failed"
        CHARGE_REVERSED = "charge.reversed"
        BATCH_COMPLETED = "batch.completed"
        BALANCE_LOW = "balance.low"
        STATEMENT_READY = "statement.ready"
        ENDPOINT_DISABLED = "webhook_endpoint.disabled"
        TEST = "webhook.test"

    # No foreign-key check per row: the settle writes one event per charge, and the seller is the
    # one whose account it holds locked. Sellers are never deleted (PROTECT everywhere else).
    seller = models.ForeignKey(
        "core.Seller", on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    seq = models.BigIntegerField()
    type = models.CharField(max_length=40, choices=Type.choices)
    created_at = models.DateTimeField()
    # Thin: ids, amounts, status, balance after; clients fetch the object for anything more. The
    # settle's events (one per charge) fill the typed columns, the cheapest row to write; other
    # events put their fields in `data`. `notifications.payload` shows both as one `data`.
    charge_id = models.BigIntegerField(null=True, blank=True)
    deposit_id = models.BigIntegerField(null=True, blank=True)
    amount = models.BigIntegerField(null=True, blank=True)
    balance_after = models.BigIntegerField(null=True, blank=True)
    failure_code = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 (NULL: none, as on Charge)
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["seller", "seq"], name="event_seq_unique_per_seller"),
        ]

    def __str__(self) -> str:
        return f"event {self.pk} {self.type} (seller {self.seller_id} #{self.seq})"

    @property
    def webhook_id(self) -> str:
        return f"evt_{self.pk}"


class WebhookEndpoint(models.Model):
    seller = models.ForeignKey("core.Seller", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    # Empty: every event type.
    event_types = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True, default="")
    secret = models.CharField(max_length=100)
    # After a rotation the old secret signs too, until `previous_secret_expires_at`.
    previous_secret = models.CharField(max_length=100, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # Events of the seller up to this seq have their deliveries to this endpoint recorded.
    fanned_seq = models.BigIntegerField(default=0)
    # Since when every attempt failed (None: the last attempt succeeded).
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"webhook endpoint {self.pk} of seller {self.seller_id}: {self.url}"


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    # Pending: when the next attempt is due (while an attempt runs, when its lease runs out).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_duration_ms = models.IntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="delivery_once_per_endpoint_and_event"),
            models.CheckConstraint(
                condition=Q(status="pending", next_attempt_at__isnull=False) | ~Q(status="pending"),
                name="delivery_pending_has_next_attempt",
            ),
        ]
        indexes = [
            # The delivery worker's queue: an endpoint's due attempts.
            models.Index(
                fields=["endpoint", "next_attempt_at"], condition=Q(status="pending"), name="delivery_due_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} of event {self.event_id} to endpoint {self.endpoint_id} ({self.status})"
