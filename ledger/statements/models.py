"""The statements' tables (imported by `ledger.models`, so they are the ledger app's). None of them
is the ledger: they are what was signed and what was built from it, and are written only by
`ledger.statements.checkpoints` and `ledger.statements.build`."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import Exact


class ChainCheckpoint(models.Model):
    """The head of a seller's hash chain at `seq` (its entry's hash, balance_after and time), signed
    with the platform's key `key_id` at `signed_at` (`ledger.statements.signing.checkpoint_message`).
    One per seller, seq and key: signing the same head again answers the same row."""

    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="+", db_index=False)
    seq = models.BigIntegerField()
    hash = models.BinaryField(max_length=32)
    balance = models.BigIntegerField()
    entry_created_at = models.DateTimeField(null=True, blank=True)  # null at seq 0 (no entry yet)
    signed_at = models.DateTimeField()
    key_id = models.CharField(max_length=16)
    signature = models.BinaryField(max_length=64)

    class Meta:
        ordering = ["seller_id", "-seq"]
        constraints = [
            models.UniqueConstraint(fields=["seller", "seq", "key_id"], name="checkpoint_unique_head_per_key"),
            models.CheckConstraint(condition=Q(seq__gte=0), name="checkpoint_seq_non_negative"),
            models.CheckConstraint(condition=Exact(Length("hash"), 32), name="checkpoint_hash_is_sha256"),
            models.CheckConstraint(condition=Exact(Length("signature"), 64), name="checkpoint_signature_is_ed25519"),
        ]

    def __str__(self) -> str:
        return f"checkpoint of seller {self.seller_id} at seq {self.seq} ({self.key_id})"


class Statement(models.Model):
    """A seller's statement for `[period_start, period_end)`, built by a worker
    (`ledger.statements.build`) into `StatementFile` pieces, one set per format."""

    class Status(models.TextChoices):
        QUEUED = "queued"  # until its build commits; a build that fails is tried again
        READY = "ready"

    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="+", db_index=False)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )  # null: the monthly statements
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    entries = models.BigIntegerField(null=True, blank=True)
    opening_seq = models.BigIntegerField(null=True, blank=True)
    opening_balance = models.BigIntegerField(null=True, blank=True)
    closing_seq = models.BigIntegerField(null=True, blank=True)
    closing_balance = models.BigIntegerField(null=True, blank=True)
    checkpoint = models.ForeignKey(
        ChainCheckpoint, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    formats = models.JSONField(default=list, blank=True)  # the formats built, e.g. ["json", "csv", "pdf"]

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["seller", "period_start", "period_end"], name="statement_unique_period"),
            models.CheckConstraint(condition=Q(period_start__lt=F("period_end")), name="statement_period_not_empty"),
            models.CheckConstraint(
                condition=~Q(status="ready") | Q(ready_at__isnull=False, checkpoint__isnull=False),
                name="statement_ready_is_signed",
            ),
        ]
        indexes = [models.Index(fields=["seller", "-id"], name="statement_seller_recent_idx")]

    def __str__(self) -> str:
        return f"statement #{self.pk} of seller {self.seller_id} ({self.status})"


class StatementFile(models.Model):
    """One piece of a built statement in one format, in PostgreSQL so any host serves it."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="+", db_index=False)
    format = models.CharField(max_length=8)
    index = models.IntegerField()
    data = models.BinaryField()  # compressed with lz4 where the server has it (migration 0017)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["statement", "format", "index"], name="statement_file_piece_unique"),
        ]

    def __str__(self) -> str:
        return f"statement #{self.statement_id} {self.format} piece {self.index}"
