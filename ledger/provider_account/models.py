"""The tables of our accounts at the providers (imported by ledger/models.py). Amounts are
integers in the smallest unit of their currency, as everywhere in the ledger."""

from django.db import models
from django.db.models import Q


class ProviderFloat(models.Model):
    """The latest poll of our balance at one provider, and the alert state read from it. One row a
    provider, updated by the poll (ledger/provider_account/floats.py)."""

    provider = models.CharField(max_length=32, primary_key=True)
    available = models.BigIntegerField(null=True, blank=True)  # null until a poll answered
    currency = models.CharField(max_length=3, blank=True, default="")
    holding = models.BigIntegerField(null=True, blank=True)
    credit_limit = models.BigIntegerField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)  # of the last poll that answered
    low = models.BooleanField(default=False)  # below PROVIDER_FLOAT_LOW at the last poll that answered
    low_since = models.DateTimeField(null=True, blank=True)
    # The provider refused a top-up for insufficient balance since the float was last seen above
    # its low threshold: routing skips it until a poll finds it recovered.
    refused_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")  # why the last poll failed ("" when it answered)
    error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"float at {self.provider}: {self.available} {self.currency}"


class ProviderBalanceSnapshot(models.Model):
    """Every answered poll, kept for the daily close: the balance at a day's bounds is read from
    the snapshots nearest them."""

    provider = models.CharField(max_length=32)
    available = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    polled_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["provider", "polled_at"], name="provider_snapshot_time_idx")]

    def __str__(self) -> str:
        return f"{self.provider} {self.available} {self.currency} at {self.polled_at}"


class ProviderFunding(models.Model):
    """Money we sent to our account at a provider, recorded by an admin: a term of the close's
    equation. Never edited: a correction is another row (a negative amount for a withdrawal)."""

    provider = models.CharField(max_length=32)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    at = models.DateTimeField()  # when the provider credited it
    reference = models.CharField(max_length=255)  # the bank transfer's, the provider's receipt
    recorded_by = models.ForeignKey(
        "auth.User", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="provider_funding_amount_non_zero"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[A-Z]{3}$"), name="provider_funding_currency"),
            models.UniqueConstraint(fields=["provider", "reference"], name="provider_funding_reference_unique"),
        ]
        indexes = [models.Index(fields=["provider", "at"], name="provider_funding_time_idx")]

    def __str__(self) -> str:
        return f"funding {self.amount} {self.currency} at {self.provider} ({self.reference})"


class ProviderClose(models.Model):
    """One UTC day's close of one provider (ledger/provider_account/close.py): a run again replaces
    it. Lists of discrepancies are bounded (CLOSE_LIST_LIMIT), their counts are not."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"  # the provider could not be read: `error` says why

    provider = models.CharField(max_length=32)
    day = models.DateField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True, default="")
    requested_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The comparison of records.
    charges = models.IntegerField(default=0)  # ours sent that day
    transactions = models.IntegerField(default=0)  # theirs created that day
    matched = models.IntegerField(default=0)
    missing_at_provider = models.IntegerField(default=0)
    missing_here = models.IntegerField(default=0)
    mismatched = models.IntegerField(default=0)
    reversed = models.IntegerField(default=0)
    still_open = models.IntegerField(default=0)
    discrepancies = models.JSONField(default=dict)  # {kind: [..]} each at most CLOSE_LIST_LIMIT long
    # The money equation: end - start == funding - delivered_cost + reversed_cost.
    currency = models.CharField(max_length=3, blank=True, default="")
    start_balance = models.BigIntegerField(null=True, blank=True)
    start_polled_at = models.DateTimeField(null=True, blank=True)
    end_balance = models.BigIntegerField(null=True, blank=True)
    end_polled_at = models.DateTimeField(null=True, blank=True)
    funding = models.BigIntegerField(default=0)
    delivered_cost = models.BigIntegerField(default=0)
    reversed_cost = models.BigIntegerField(default=0)
    uncosted = models.IntegerField(default=0)  # delivered charges without a recorded cost
    difference = models.BigIntegerField(null=True, blank=True)  # actual change - expected change
    balanced = models.BooleanField(null=True, blank=True)  # null: no balance to compare with

    class Meta:
        ordering = ["-day", "provider"]
        constraints = [models.UniqueConstraint(fields=["provider", "day"], name="provider_close_day_unique")]

    def __str__(self) -> str:
        return f"close of {self.provider} on {self.day} ({self.status})"
