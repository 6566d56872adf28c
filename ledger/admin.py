"""The Django admin for admins: everything is read-only except deciding deposits, and that goes
through the same services as the API (`deposit_approve` enqueues the seller's worker after
commit). No screen here can add, change or delete a balance, an entry, a charge or a deposit."""

import logging

from django.contrib import admin, messages

from core.admin_mixins import ReadOnlyAdmin
from core.errors import DomainError
from core.roles import Role, role_of
from ledger.models import Charge, ChargeBatch, Deposit, Entry, ProviderMismatch
from ledger.services.deposits import deposit_approve, deposit_reject

logger = logging.getLogger(__name__)


@admin.register(Deposit)
class DepositAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "seller",
        "amount",
        "status",
        "reference",
        "created_at",
        "decided_by",
        "decided_at",
        "balance_after",
    )
    list_filter = ("status",)
    list_select_related = ("seller", "decided_by")
    search_fields = ("=id", "=seller__id", "reference")
    actions = ["approve_deposits", "reject_deposits"]

    def has_decide_permission(self, request) -> bool:
        return role_of(request.user) in (Role.ADMIN, Role.APPROVER)

    @admin.action(description="Approve selected pending deposits", permissions=["decide"])
    def approve_deposits(self, request, queryset):
        self._decide(request, queryset, "approve")

    @admin.action(description="Reject selected pending deposits", permissions=["decide"])
    def reject_deposits(self, request, queryset):
        self._decide(request, queryset, "reject")

    def _decide(self, request, queryset, verb: str) -> None:
        done, refused = [], []
        # Ids only: each decision is its own conditional update, exactly as over the API.
        for deposit_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                if verb == "approve":
                    deposit = deposit_approve(deposit_id=deposit_id, approved_by=request.user)
                else:
                    deposit = deposit_reject(
                        deposit_id=deposit_id, rejected_by=request.user, reason="rejected in admin"
                    )
            except DomainError as exc:
                refused.append(f"#{deposit_id}: {exc.detail}")
                continue
            done.append(deposit_id)
            logger.info(
                "deposit %s in admin",
                "approved" if verb == "approve" else "rejected",
                extra={
                    "deposit_id": deposit_id,
                    "seller_id": deposit.seller_id,
                    "amount": deposit.amount,
                    "user_id": request.user.pk,
                    "event": f"deposit.{verb}",
                },
            )
        if done:
            what = "approved (the seller's worker credits them shortly)" if verb == "approve" else "rejected"
            self.message_user(
                request, f"{len(done)} deposit(s) {what}: {', '.join(f'#{i}' for i in done)}", messages.SUCCESS
            )
        if refused:
            self.message_user(request, "Not changed: " + "; ".join(refused), messages.WARNING)


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "seller",
        "phone_number",
        "amount",
        "status",
        "failure_code",
        "balance_after",
        "batch",
        "created_at",
        "settled_at",
    )
    list_filter = ("status", "failure_code")
    list_select_related = ("seller", "batch")
    search_fields = ("=id", "=seller__id", "=phone_number", "=external_id", "reference")


@admin.register(ChargeBatch)
class ChargeBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "seller",
        "filename",
        "status",
        "total_rows",
        "valid_rows",
        "invalid_rows",
        "created_at",
        "completed_at",
    )
    list_filter = ("status",)
    list_select_related = ("seller",)
    search_fields = ("=id", "=seller__id", "filename")

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "progress"]

    @admin.display(description="progress")
    def progress(self, obj) -> str:
        # As over the API: read from the batch row, which the import and the settles keep current.
        if obj.status == ChargeBatch.Status.VALIDATING:
            return f"validating: {obj.rows_read_so_far} rows read"
        return f"{obj.queued} queued, {obj.succeeded} succeeded ({obj.succeeded_amount} charged), {obj.failed} failed"


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "seller",
        "seq",
        "kind",
        "amount",
        "balance_before",
        "balance_after",
        "charge",
        "deposit",
        "created_at",
    )
    list_filter = ("kind",)
    list_select_related = ("seller", "charge", "deposit")
    search_fields = ("=seller__id", "=charge__id", "=deposit__id")


@admin.register(ProviderMismatch)
class ProviderMismatchAdmin(ReadOnlyAdmin):
    """Charges held because the provider answered about another transaction (docs/operations.md,
    *The top-up provider*): what it answered, and since when."""

    list_display = ("charge", "detail", "first_seen_at", "last_seen_at")
    list_select_related = ("charge",)
    search_fields = ("=charge__id", "=charge__external_id")
