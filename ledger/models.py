"""The ledger's tables. Invariants 1-5 of the design are database constraints here; the audit
(`ledger/audit/`) checks the ones a constraint cannot express (gapless seq, sums).

Money is an integer number of the smallest currency unit. Balances and entries are written only
by `ledger.posting`; nothing else may call `save()` on them."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import Exact

from ledger.statements.chain import GENESIS


class Account(models.Model):
    """`balance` is what the seller may spend (available); `held` is credit reserved by charges
    the provider has not settled yet. Both move only in `ledger.posting`."""

    seller = models.OneToOneField("core.Seller", on_delete=models.PROTECT, primary_key=True, related_name="account")
    balance = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0, db_default=0)
    last_seq = models.BigIntegerField(default=0)
    # The hash of the last entry (ledger/statements/chain.py); 32 zero bytes before the first.
    last_hash = models.BinaryField(max_length=32, default=GENESIS, db_default=GENESIS)
    updated_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_non_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_non_negative"),
            models.CheckConstraint(condition=Q(last_seq__gte=0), name="account_last_seq_non_negative"),
        ]

    def __str__(self) -> str:
        return f"account of seller {self.seller_id}: {self.balance}"


class Deposit(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVING = "approving"
        APPROVED = "approved"
        REJECTED = "rejected"

    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="deposits")
    amount = models.BigIntegerField()
    reference = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: no key / no failure; "" would collide in the unique index)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True, default="")
    applied_at = models.DateTimeField(null=True, blank=True)
    balance_after = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="deposit_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "approving", "approved", "rejected"]),
                name="deposit_status_known",
            ),
            models.CheckConstraint(
                condition=~Q(status="approved") | Q(applied_at__isnull=False, balance_after__isnull=False),
                name="deposit_approved_has_outcome",
            ),
            models.CheckConstraint(
                condition=Q(status="approved") | Q(applied_at__isnull=True, balance_after__isnull=True),
                name="deposit_only_approved_applied",
            ),
            models.UniqueConstraint(
                fields=["seller", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="deposit_idempotency_key_unique_per_seller",
            ),
        ]
        indexes = [
            # The worker's queue of approved-but-not-applied deposits.
            models.Index(fields=["seller", "id"], condition=Q(status="approving"), name="deposit_approving_idx"),
            models.Index(fields=["status", "id"], name="deposit_status_idx"),
        ]

    def __str__(self) -> str:
        return f"deposit #{self.pk} {self.amount} ({self.status})"


class Charge(models.Model):
    """A top-up. `status` is what existing clients read (queued until the outcome is final);
    `stage` is the lifecycle (docs/architecture.md): `queued` -> `reserved` (the settle placed a
    hold: the debit entry) -> `submitted` (sent to the provider) -> `unknown` (the answer was lost:
    the reconciler asks) -> `done`. The fulfilment side records the provider's answer as an
    intent (`outcome`, `outcome_code`); the settle applies it: posts the hold or releases it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        # Succeeded, then reversed by the provider: its debit stands and a `refund` entry gives it back.
        REVERSED = "reversed"

    class Stage(models.TextChoices):
        QUEUED = "queued"
        RESERVED = "reserved"
        SUBMITTED = "submitted"
        UNKNOWN = "unknown"
        DONE = "done"

    class FailureCode(models.TextChoices):
        INSUFFICIENT_FUNDS = "insufficient_funds"
        SELLER_INACTIVE = "seller_inactive"
        INVALID_NUMBER = "invalid_number"
        OPERATOR_DECLINED = "operator_declined"
        PROVIDER_REJECTED = "provider_rejected"
        # The provider refused before processing for a reason about our account with it.
        PRODUCT_UNAVAILABLE = "product_unavailable"
        PROVIDER_INSUFFICIENT_BALANCE = "provider_insufficient_balance"
        # No longer given: a charge the provider has no record of is sent again, never timed out
        # (docs/architecture.md, "Fulfilment"). Charges failed so before keep it.
        PROVIDER_TIMEOUT = "provider_timeout"

    OPEN_STAGES = (Stage.RESERVED, Stage.SUBMITTED, Stage.UNKNOWN)  # the charge holds credit
    POSTED_STATUSES = (Status.SUCCEEDED, Status.REVERSED)  # its hold was posted: its debit stands
    MARGIN = F("amount") - F("cost")  # the platform's margin on a priced charge (an annotation)

    # Indexed by charge_seller_recent_idx (seller, -id).
    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="charges", db_index=False)
    phone_number = models.CharField(max_length=20)
    amount = models.BigIntegerField()
    reference = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    failure_code = models.CharField(max_length=32, choices=FailureCode.choices, null=True, blank=True)  # noqa: DJ001 (the contract says null)
    balance_after = models.BigIntegerField(null=True, blank=True)
    # Indexed by charge_batch_line_unique (batch, batch_line); a second index would only slow the
    # bulk inserts of imports and every settlement's status update.
    batch = models.ForeignKey(
        "ledger.ChargeBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="charges",
        db_index=False,
    )
    batch_line = models.IntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: no key / no failure; "" would collide in the unique index)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    # Fulfilment. Columns with a database default, so the one-statement insert of the API and the
    # COPY of imports need not name them.
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.QUEUED, db_default=Stage.QUEUED)
    reserved_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    provider_reference = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 (null until the provider names it)
    # The provider's final answer, recorded by a fulfilment worker, a callback or the reconciler,
    # waiting for the seller's settle to apply it.
    outcome = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001 (null: no answer yet)
    outcome_code = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 (null unless failed)
    outcome_at = models.DateTimeField(null=True, blank=True)
    # The reconciler's next lookup of a submitted or unknown charge, and how many it made.
    next_check_at = models.DateTimeField(null=True, blank=True)
    checks = models.IntegerField(default=0, db_default=0)
    # Requests sent under its external id: the first send, a send again after a refusal before
    # processing, and each resend of the reconciler while the provider has no record of it.
    sends = models.IntegerField(default=0, db_default=0)
    # The id the provider knows this charge by, fixed when it is first sent to a provider: every
    # resend, lookup and callback names it (ledger/fulfilment/identity.py). A new one only when
    # routing moves the charge to another provider, which never saw it (`route_moves`).
    external_id = models.CharField(max_length=80, null=True, blank=True, unique=True)  # noqa: DJ001 (null until sent)
    # The provider it is sent to (a name of `PROVIDERS`), fixed when it is first claimed; "" until
    # then, and on charges sent before routing (the default provider's). `served_by`: that
    # provider's product, when a route named it (null: the product itself); `cost` is then that
    # provider's. `route_moves`: how often routing moved it after a refusal before processing
    # (ChargeRouteMove rows, ledger/fulfilment/routing.py).
    provider = models.CharField(max_length=50, blank=True, default="", db_default="")
    served_by = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    route_moves = models.SmallIntegerField(default=0, db_default=0)
    # What it sells (catalog/sales.py), fixed when it is recorded: a later sync or price change
    # never rewrites a charge. `amount` is the seller's price (the hold, then the debit);
    # `cost` what the provider charges us; the margin is the difference (`MARGIN`). All null on
    # charges recorded before the catalog existed.
    operator = models.ForeignKey(
        "catalog.Operator", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    product = models.ForeignKey(  # the version's product (a composite foreign key holds them together)
        "catalog.Product", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    product_version = models.ForeignKey(
        "catalog.ProductVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="charges",
        db_index=False,
    )
    quote = models.OneToOneField(  # unique: a quote is used at most once
        "catalog.Quote", on_delete=models.PROTECT, null=True, blank=True, related_name="charge"
    )
    cost = models.BigIntegerField(null=True, blank=True)
    # The top-up asked for, in the destination currency's smallest unit, and what the provider
    # reports it delivered.
    destination_amount = models.BigIntegerField(null=True, blank=True)
    destination_currency = models.CharField(max_length=3, null=True, blank=True)  # noqa: DJ001 (null: not priced)
    delivered_amount = models.BigIntegerField(null=True, blank=True)
    delivered_currency = models.CharField(max_length=3, null=True, blank=True)  # noqa: DJ001 (null: not reported)
    # A reversal of the delivered top-up by the provider (ledger/charge_lifecycle.py): its reason in
    # the provider's words, recorded as an intent on a succeeded charge; the settle then writes the
    # `refund` entry and marks the charge `reversed` (`reversed_at`).
    reversal_reason = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 (null: not reversed)
    reversal_recorded_at = models.DateTimeField(null=True, blank=True)
    reversed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="charge_amount_positive"),
            # A reversal is recorded only on a charge the provider said it delivered, and applied
            # (reversed_at) exactly when the charge is `reversed`.
            models.CheckConstraint(
                condition=(
                    Q(reversal_reason__isnull=True, reversal_recorded_at__isnull=True, reversed_at__isnull=True)
                    | Q(
                        reversal_reason__isnull=False,
                        reversal_recorded_at__isnull=False,
                        outcome="succeeded",
                        status__in=["succeeded", "reversed"],
                    )
                )
                & (
                    Q(status="reversed", reversed_at__isnull=False) | Q(~Q(status="reversed"), reversed_at__isnull=True)
                ),
                name="charge_reversal_consistent",
            ),
            models.CheckConstraint(
                condition=Q(
                    operator__isnull=True,
                    product__isnull=True,
                    product_version__isnull=True,
                    quote__isnull=True,
                    cost__isnull=True,
                    destination_amount__isnull=True,
                    destination_currency__isnull=True,
                )
                | Q(
                    operator__isnull=False,
                    product__isnull=False,
                    product_version__isnull=False,
                    cost__gte=0,
                    destination_amount__gt=0,
                    destination_currency__regex=r"^[A-Z]{3}$",
                ),
                name="charge_sale_complete",
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        status="queued",
                        stage="queued",
                        failure_code__isnull=True,
                        balance_after__isnull=True,
                        settled_at__isnull=True,
                        reserved_at__isnull=True,
                    )
                    | Q(
                        status="queued",
                        stage__in=["reserved", "submitted", "unknown"],
                        failure_code__isnull=True,
                        balance_after__isnull=False,
                        settled_at__isnull=True,
                        reserved_at__isnull=False,
                    )
                    | Q(
                        status="succeeded",
                        stage="done",
                        failure_code__isnull=True,
                        balance_after__isnull=False,
                        settled_at__isnull=False,
                    )
                    | Q(
                        status="failed",
                        stage="done",
                        failure_code__isnull=False,
                        balance_after__isnull=True,
                        settled_at__isnull=False,
                    )
                    | Q(
                        status="reversed",
                        stage="done",
                        failure_code__isnull=True,
                        balance_after__isnull=False,
                        settled_at__isnull=False,
                    )
                ),
                name="charge_status_consistent",
            ),
            models.CheckConstraint(
                condition=Q(outcome__isnull=True, outcome_code__isnull=True)
                | Q(outcome="succeeded", outcome_code__isnull=True, stage__in=["submitted", "unknown", "done"])
                | Q(outcome="failed", outcome_code__isnull=False, stage__in=["submitted", "unknown", "done"]),
                name="charge_outcome_consistent",
            ),
            # A charge succeeds on the provider's word, and only on it: with the constraints above,
            # `status` is a function of `stage` and `outcome`. `outcome IS NOT NULL` is spelled out:
            # without it a charge with no answer at all passed, as a CHECK passes on NULL.
            models.CheckConstraint(
                condition=(~Q(status__in=["succeeded", "reversed"]) | Q(outcome__isnull=False, outcome="succeeded"))
                & (~Q(stage="done", outcome="succeeded") | Q(status__in=["succeeded", "reversed"])),
                name="charge_succeeded_by_provider",
            ),
            models.UniqueConstraint(
                fields=["seller", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="charge_idempotency_key_unique_per_seller",
            ),
            models.UniqueConstraint(
                fields=["batch", "batch_line"], condition=Q(batch__isnull=False), name="charge_batch_line_unique"
            ),
        ]
        indexes = [
            # The settle's queues: a seller's charges to reserve, and those whose provider answer
            # waits to be applied, oldest first. Partial, so they stay small.
            models.Index(fields=["seller", "id"], condition=Q(stage="queued"), name="charge_queued_idx"),
            models.Index(
                fields=["seller", "id"],
                condition=Q(outcome__isnull=False) & ~Q(stage="done"),
                name="charge_answered_idx",
            ),
            # Open holds: the fulfilment sweep, the reconciler, and the audit of `held`.
            models.Index(
                fields=["seller", "id"],
                condition=Q(stage__in=["reserved", "submitted", "unknown"]),
                name="charge_open_idx",
            ),
            # The reconciler's due lookups, by when they are due: its range scan stops at the first
            # live entry, where charge_open_idx's (seller, id) order made every tick walk all open
            # charges, and the dead entries of those answered since the last vacuum, as a bitmap
            # scan (which never marks an entry dead) every two seconds.
            models.Index(
                fields=["next_check_at"],
                condition=Q(stage__in=["submitted", "unknown"], outcome__isnull=True),
                name="charge_check_due_idx",
            ),
            models.Index(fields=["seller", "-id"], name="charge_seller_recent_idx"),
            # Holds posted after a seller's last entry before a time (the balance at a past time):
            # a post writes no entry.
            models.Index(
                fields=["seller", "settled_at"],
                condition=Q(status__in=["succeeded", "reversed"]),
                name="charge_posted_idx",
            ),
            # Reversals recorded and not applied yet: the settle's queue of refunds.
            models.Index(
                fields=["seller", "id"],
                condition=Q(status="succeeded", reversal_reason__isnull=False),
                name="charge_reversal_waiting_idx",
            ),
            models.Index(fields=["batch", "status"], condition=Q(batch__isnull=False), name="charge_batch_status_idx"),
        ]

    def __str__(self) -> str:
        return f"charge #{self.pk} {self.amount} to {self.phone_number} ({self.status})"


class ChargeBatch(models.Model):
    """An import of a charge list. `validating` while the import worker reads the stored file
    (`rows_read_so_far`), then `queued` (its valid rows are charges) and `completed` once the
    seller's settle has settled the last of them; or `rejected`, final, when the file turned out
    to hold no valid row or to be unreadable past its first bytes (nothing queued, `errors` says why)."""

    class Status(models.TextChoices):
        VALIDATING = "validating"
        QUEUED = "queued"
        COMPLETED = "completed"
        REJECTED = "rejected"

    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="charge_batches")
    filename = models.CharField(max_length=255, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.VALIDATING)
    total_rows = models.IntegerField(default=0)
    valid_rows = models.IntegerField(default=0)
    invalid_rows = models.IntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: no key / no failure; "" would collide in the unique index)
    request_fingerprint = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # When the batch reached its final state: its last charge settled, or the file was rejected.
    completed_at = models.DateTimeField(null=True, blank=True)
    # The input's column names in the input's order, so the results file echoes the same layout.
    columns = models.JSONField(default=list, blank=True)
    file_size = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Data rows read by the import, once it is over (while validating: `ChargeBatchImport`).
    rows_read = models.IntegerField(default=0)
    # Outcome of the batch's charges so far, added to by the settle that settles them (in its
    # transaction, under the seller's account lock: the only writers of a batch's charges), which
    # also marks the batch completed when the last one settles.
    succeeded = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    succeeded_amount = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "charge batches"
        constraints = [
            models.UniqueConstraint(
                fields=["seller", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="batch_idempotency_key_unique_per_seller",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["validating", "queued", "completed", "rejected"]),
                name="batch_status_known",
            ),
            models.CheckConstraint(
                condition=Q(succeeded__gte=0, failed__gte=0) & Q(succeeded__lte=F("valid_rows") - F("failed")),
                name="batch_outcomes_within_valid_rows",
            ),
        ]

    def __str__(self) -> str:
        return f"batch #{self.pk} {self.filename} ({self.status})"

    @property
    def rows_read_so_far(self) -> int:
        """Data rows the import has read: while validating, from its progress row (select it
        with `select_related("running_import")`)."""
        if self.status == self.Status.VALIDATING:
            running = getattr(self, "running_import", None)
            return running.rows_read if running else 0
        return self.rows_read

    @property
    def queued(self) -> int:
        """Charges of the batch not settled yet."""
        if self.status in (self.Status.QUEUED, self.Status.COMPLETED):
            return self.valid_rows - self.succeeded - self.failed
        return 0


class ChargeBatchImport(models.Model):
    """The running import of a `validating` batch: rows read so far and its last sign of life (the
    resume sweeper restarts an import whose worker went silent). Written by the import over a
    connection of its own while its long transaction is open; a row apart from the batch's, because
    every charge the import inserts references the batch row, and each foreign-key check at commit
    would walk every version of that row the progress updates had left. Deleted with the import."""

    batch = models.OneToOneField(
        "ledger.ChargeBatch", on_delete=models.CASCADE, primary_key=True, related_name="running_import"
    )
    rows_read = models.IntegerField(default=0)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"import of batch #{self.batch_id}: {self.rows_read} rows read"


class ChargeBatchFileChunk(models.Model):
    """The uploaded file of a batch, stored in PostgreSQL in fixed-size pieces so any worker host
    can read it and nobody holds it whole. Deleted when the import reaches queued or rejected."""

    batch = models.ForeignKey("ledger.ChargeBatch", on_delete=models.CASCADE, related_name="+", db_index=False)
    index = models.IntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="batch_file_chunk_unique"),
        ]

    def __str__(self) -> str:
        return f"batch #{self.batch_id} chunk {self.index}"


class ChargeBatchRejectedRow(models.Model):
    """An input row of a batch that failed validation: kept as given (never queued) so the results
    file can still answer one line per input row."""

    batch = models.ForeignKey(ChargeBatch, on_delete=models.CASCADE, related_name="rejected_rows", db_index=False)
    line = models.IntegerField()
    phone_number = models.TextField(blank=True, default="")
    amount = models.TextField(blank=True, default="")
    reference = models.TextField(blank=True, default="")
    error = models.TextField()

    class Meta:
        ordering = ["batch", "line"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "line"], name="batch_rejected_row_line_unique"),
        ]

    def __str__(self) -> str:
        return f"batch #{self.batch_id} line {self.line}: {self.error}"


class Entry(models.Model):
    """One change of one seller's balance. Append-only (a trigger refuses UPDATE and DELETE)."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        CHARGE = "charge"  # the debit of a charge, placed as its hold when reserved
        RELEASE = "release"  # the hold of a charge the provider did not fulfil, given back
        REFUND = "refund"  # the debit of a charge the provider reversed after delivering it, given back
        ADJUSTMENT = "adjustment"  # e.g. the debit of a late success an admin charged to the seller

    # Indexed by the (seller, seq) unique constraint; a second index would only slow inserts.
    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="entries", db_index=False)
    seq = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.BigIntegerField()
    balance_before = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    # Indexed by entry_one_per_charge_and_kind (charge, kind).
    charge = models.ForeignKey(
        Charge, on_delete=models.PROTECT, null=True, blank=True, related_name="entries", db_index=False
    )
    deposit = models.OneToOneField(Deposit, on_delete=models.PROTECT, null=True, blank=True, related_name="entry")
    created_at = models.DateTimeField()
    # The seller's held credit once the entry's settle batch is applied up to this entry, counting
    # every hold that batch posted (posting a hold writes no entry): the balance at a past time
    # reads it (ledger/statements/balance_at.py). Not covered by the hash.
    held_after = models.BigIntegerField()
    # SHA-256(previous entry's hash || this entry's canonical bytes): ledger/statements/chain.py.
    hash = models.BinaryField(max_length=32)

    class Meta:
        ordering = ["-seller_id", "-seq"]
        verbose_name_plural = "entries"
        indexes = [
            # The last entry at or before a time (the balance at a past time, statements' bounds).
            models.Index(fields=["seller", "created_at", "seq"], name="entry_seller_time_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["seller", "seq"], name="entry_seq_unique_per_seller"),
            models.CheckConstraint(condition=Exact(Length("hash"), 32), name="entry_hash_is_sha256"),
            # A charge's hold is placed once and released at most once.
            models.UniqueConstraint(
                fields=["charge", "kind"], condition=Q(charge__isnull=False), name="entry_one_per_charge_and_kind"
            ),
            models.CheckConstraint(condition=Q(seq__gte=1), name="entry_seq_positive"),
            models.CheckConstraint(
                condition=Q(balance_after=F("balance_before") + F("amount")), name="entry_balance_arithmetic"
            ),
            models.CheckConstraint(
                condition=Q(balance_before__gte=0, balance_after__gte=0), name="entry_balances_non_negative"
            ),
            models.CheckConstraint(condition=~Q(amount=0), name="entry_amount_non_zero"),
            models.CheckConstraint(
                condition=(
                    Q(kind="deposit", deposit__isnull=False, charge__isnull=True, amount__gt=0)
                    | Q(kind="charge", charge__isnull=False, deposit__isnull=True, amount__lt=0)
                    | Q(kind="release", charge__isnull=False, deposit__isnull=True, amount__gt=0)
                    | Q(kind="refund", charge__isnull=False, deposit__isnull=True, amount__gt=0)
                    | Q(kind="adjustment", deposit__isnull=True)
                ),
                name="entry_kind_matches_intent",
            ),
        ]

    def __str__(self) -> str:
        return f"entry {self.seller_id}#{self.seq} {self.amount:+d} -> {self.balance_after}"


class AuditCheckpoint(models.Model):
    """How far the periodic audit (`ledger/audit/incremental.py`) has verified one seller's ledger,
    with the running sums it needs to check only what came after. The audit's own bookkeeping,
    not the ledger: written only by that audit, never read by posting.

    Entries up to `seq` chain to `balance` and sum to `entry_sum` (`other_sum`: refunds and
    adjustments). Every charge below `charge_floor` was final (done) and checked; their succeeded
    amounts sum to `succeeded_below`; likewise deposits below `deposit_floor` (approved or rejected,
    `approved_below`). `charge_seen`, `deposit_seen` and `snapshot_xmax` come from one snapshot and
    bound how far the floors may move next time (a charge inserted by a transaction still open at
    that snapshot may carry a lower id than ones already visible)."""

    seller = models.OneToOneField("core.Seller", on_delete=models.CASCADE, primary_key=True, related_name="+")
    seq = models.BigIntegerField()
    balance = models.BigIntegerField()
    entry_sum = models.BigIntegerField()
    other_sum = models.BigIntegerField()
    charge_floor = models.BigIntegerField()
    charge_seen = models.BigIntegerField()
    succeeded_below = models.BigIntegerField()
    deposit_floor = models.BigIntegerField()
    deposit_seen = models.BigIntegerField()
    approved_below = models.BigIntegerField()
    snapshot_xmax = models.BigIntegerField()
    verified_at = models.DateTimeField()
    # When this seller's whole ledger was last verified from its first entry (the rolling pass).
    full_verified_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["full_verified_at", "seller"], name="audit_checkpoint_full_idx")]

    def __str__(self) -> str:
        return f"audit checkpoint of seller {self.seller_id} at seq {self.seq}"


class Installation(models.Model):
    """This database's identity towards the providers: one row, a random token made when the
    database is created. External ids carry it, so a fresh database (a reset, a second stack, a
    staging copy) never reuses an id an earlier one sent to the same provider account, whatever
    its charge ids. `manage.py rotate_installation_id` makes a new one (after restoring a backup)."""

    id = models.SmallIntegerField(primary_key=True, default=1, db_default=1)
    token = models.CharField(max_length=32, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="installation_single_row")]

    def __str__(self) -> str:
        return f"installation {self.token}"


class ProviderMismatch(models.Model):
    """A provider answered about a transaction other than the one we asked for (our external id
    already used with another number or amount, or a transaction created before our charge): the
    charge stays held and `unknown`, never succeeded or failed on that answer, until an admin has
    looked (listed in ops/queues, counted in the metrics)."""

    charge = models.OneToOneField(Charge, on_delete=models.PROTECT, primary_key=True, related_name="+")
    detail = models.TextField()
    answered = models.JSONField(default=dict)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"provider mismatch on charge #{self.charge_id}"


class ProviderConflict(models.Model):
    """The provider's word contradicts a final outcome we applied: a **late success** (it says it
    delivered a top-up whose charge we failed and released). Never applied silently: it waits for
    an admin (ops/queues, the metrics), who settles it (ledger/conflicts.py) either by debiting the
    seller (`debiting`, then the settle writes an `adjustment` entry of the charge's amount:
    `debited`; a balance that cannot cover it leaves the conflict `open` with `refusal` saying so)
    or by booking the loss (`loss_booked`, no entry). Only ledger/conflicts.py changes `status`."""

    class Status(models.TextChoices):
        OPEN = "open"
        DEBITING = "debiting"  # an admin asked for the debit; the seller's settle applies it
        DEBITED = "debited"
        LOSS_BOOKED = "loss_booked"

    class Kind(models.TextChoices):
        LATE_SUCCESS = "late_success"

    charge = models.OneToOneField(Charge, on_delete=models.PROTECT, primary_key=True, related_name="+")
    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="+", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LATE_SUCCESS)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    amount = models.BigIntegerField()  # what a debit takes: the charge's price
    detail = models.TextField()
    answered = models.JSONField(default=dict)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(null=True, blank=True)
    # Why the last debit asked could not be applied (the balance did not cover it).
    refusal = models.CharField(max_length=200, blank=True, default="")
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["open", "debiting", "debited", "loss_booked"]),
                name="conflict_status_known",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="conflict_amount_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["debited", "loss_booked"], settled_at__isnull=False)
                | Q(status__in=["open", "debiting"], settled_at__isnull=True),
                name="conflict_settled_when_final",
            ),
        ]
        indexes = [
            # The settle's queue of debits an admin asked for; the open conflicts (ops/queues).
            models.Index(fields=["seller"], condition=Q(status="debiting"), name="conflict_debiting_idx"),
            models.Index(
                fields=["first_seen_at"], condition=Q(status__in=["open", "debiting"]), name="conflict_open_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on charge #{self.charge_id} ({self.status})"


# Tables defined beside the code that writes them: our accounts at the providers (the float,
# funding, the daily close) and the statements.
class ChargeRouteMove(models.Model):
    """A provider that refused a charge before processing it, so routing moved the charge to the
    next (ledger/fulfilment/routing.py): which provider, under which external id (null: never sent
    there, e.g. its breaker was open) and why. Written only by `charge_lifecycle.reroute`."""

    class Reason(models.TextChoices):
        INSUFFICIENT_BALANCE = "insufficient_balance"  # our float there (refused, or known refused)
        PRODUCT_UNAVAILABLE = "product_unavailable"  # the product withdrawn there
        UNAVAILABLE = "unavailable"  # 503/429 before processing, or its breaker open

    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="route_moves_made")
    provider = models.CharField(max_length=50)
    external_id = models.CharField(max_length=80, null=True, blank=True, unique=True)  # noqa: DJ001 (null: never sent there)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    moved_to = models.CharField(max_length=50)
    at = models.DateTimeField()

    class Meta:
        ordering = ["charge_id", "id"]
        indexes = [models.Index(fields=["charge"], name="charge_route_move_charge_idx")]

    def __str__(self) -> str:
        return f"charge {self.charge_id}: {self.provider} → {self.moved_to} ({self.reason})"


from ledger.provider_account.models import (  # noqa: E402, F401
    ProviderBalanceSnapshot,
    ProviderClose,
    ProviderFloat,
    ProviderFunding,
)
from ledger.statements.models import ChainCheckpoint, Statement, StatementFile  # noqa: E402, F401
