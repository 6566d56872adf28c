"""The Django admin for admins: everything is read-only except deciding deposits, and that goes
through the same services as the API (`deposit_approve` enqueues the seller's worker after
commit). No screen here can add, change or delete a balance, an entry, a charge or a deposit."""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from core.admin_mixins import ReadOnlyAdmin
from core.errors import DomainError
from core.roles import Role, role_of
from ledger.conflicts import ConflictStateError, conflict_book_loss, conflict_debit_request
from ledger.models import (
    Charge,
    ChargeBatch,
    ChargeRouteMove,
    Deposit,
    Entry,
    ProviderClose,
    ProviderConflict,
    ProviderFloat,
    ProviderFunding,
    ProviderMismatch,
)
from ledger.reports import MarginRow, margin_report
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
        "product",
        "destination_amount",
        "destination_currency",
        "amount",
        "provider",
        "cost",
        "status",
        "failure_code",
        "balance_after",
        "batch",
        "created_at",
        "settled_at",
    )
    list_filter = ("status", "failure_code", "provider")
    list_select_related = ("seller", "batch", "product")
    search_fields = ("=id", "=seller__id", "=phone_number", "=external_id", "reference")
    change_list_template = "admin/ledger/charge/change_list.html"  # links to the margin chart

    def get_urls(self):
        margin = path("margin/", self.admin_site.admin_view(self.margin_view), name="ledger_charge_margin")
        return [margin, *super().get_urls()]

    def margin_view(self, request):
        """Margin per day over the last `MARGIN_CHART_DAYS` days, as bars (an SVG drawn here) and
        a table: the margin report's day grouping (ledger/reports.py)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        until = timezone.now()
        since = (until - timedelta(days=MARGIN_CHART_DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        by_day = {row.key: row for row in margin_report(since=since, until=until, group_by="day")}
        days = [(since + timedelta(days=n)).date().isoformat() for n in range(MARGIN_CHART_DAYS)]
        rows = [by_day.get(day) or MarginRow(day, day, 0, 0, 0, 0) for day in days]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Margin per day, last {MARGIN_CHART_DAYS} days ({settings.PLATFORM_CURRENCY})",
            "opts": self.model._meta,
            "rows": rows,
            "bars": _bars(rows),
            "total": sum(row.margin for row in rows),
        }
        return TemplateResponse(request, "admin/ledger/charge/margin.html", context)


MARGIN_CHART_DAYS = 30
_CHART_WIDTH, _CHART_HEIGHT = 720, 200


def _bars(rows) -> list[dict]:
    """One bar per day, scaled to the largest margin (a loss is drawn below the axis)."""
    largest = max((abs(row.margin) for row in rows), default=0) or 1
    width = _CHART_WIDTH / len(rows)
    half = _CHART_HEIGHT / 2
    bars = []
    for n, row in enumerate(rows):
        height = round(half * abs(row.margin) / largest, 1)
        top = half - height if row.margin >= 0 else half
        bars.append(
            {"x": round(n * width + 1, 1), "y": top, "width": round(width - 2, 1), "height": height, "row": row}
        )
    return bars


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


@admin.register(ChargeRouteMove)
class ChargeRouteMoveAdmin(ReadOnlyAdmin):
    """Charges routing moved to their next provider after a refusal before processing
    (docs/provider.md, *Routing*): which provider refused, under which external id, and why."""

    list_display = ("charge", "provider", "external_id", "reason", "moved_to", "at")
    list_filter = ("reason", "provider", "moved_to")
    list_select_related = ("charge",)
    search_fields = ("=charge__id", "=external_id")


@admin.register(ProviderMismatch)
class ProviderMismatchAdmin(ReadOnlyAdmin):
    """Charges held because the provider answered about another transaction (docs/operations.md,
    *The top-up provider*): what it answered, and since when."""

    list_display = ("charge", "detail", "first_seen_at", "last_seen_at")
    list_select_related = ("charge",)
    search_fields = ("=charge__id", "=charge__external_id")


@admin.register(ProviderConflict)
class ProviderConflictAdmin(ReadOnlyAdmin):
    """Late successes: the provider says it delivered a top-up whose charge we failed
    (docs/operations.md, *Reversals and late successes*). Settled by one of the two actions, through
    the same functions as the staff API (ledger/conflicts.py); asking twice changes nothing."""

    list_display = ("charge", "seller", "status", "amount", "refusal", "first_seen_at", "settled_at")
    list_filter = ("status",)
    list_select_related = ("charge", "seller")
    search_fields = ("=charge__id", "=seller__id")
    actions = ["debit_sellers", "book_losses"]

    def has_settle_permission(self, request) -> bool:
        return role_of(request.user) == Role.ADMIN

    @admin.action(description="Debit the seller (if its balance covers it)", permissions=["settle"])
    def debit_sellers(self, request, queryset):
        self._settle(request, queryset, conflict_debit_request, "debit asked (the seller's worker applies it)")

    @admin.action(description="Book the loss (the seller is not charged)", permissions=["settle"])
    def book_losses(self, request, queryset):
        self._settle(request, queryset, conflict_book_loss, "loss booked")

    def _settle(self, request, queryset, settle, what: str) -> None:
        done, refused = [], []
        for charge_id in queryset.order_by("charge_id").values_list("charge_id", flat=True):
            try:
                settle(charge_id=charge_id, user_id=request.user.pk)
            except ConflictStateError as exc:
                refused.append(f"#{charge_id}: {exc.status}")
                continue
            done.append(charge_id)
        if done:
            self.message_user(request, f"{what}: {', '.join(f'#{i}' for i in done)}", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not changed: " + "; ".join(refused), messages.WARNING)


@admin.register(ProviderFunding)
class ProviderFundingAdmin(admin.ModelAdmin):
    """Money we sent to our account at a provider (a term of the daily close's equation). Added
    here or through `POST /api/v1/ops/provider-funding/`, never changed or deleted: a correction
    is another entry (negative for a withdrawal)."""

    list_display = ("provider", "amount", "currency", "at", "reference", "recorded_by", "recorded_at")
    list_filter = ("provider",)
    search_fields = ("=reference",)
    fields = ("provider", "amount", "currency", "at", "reference")

    def has_add_permission(self, request) -> bool:
        return role_of(request.user) == Role.ADMIN

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None  # the list, and the add form; never an existing entry

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        obj.recorded_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(ProviderClose)
class ProviderCloseAdmin(ReadOnlyAdmin):
    """The daily closes per provider (docs/operations.md, *The daily close per provider*)."""

    list_display = (
        "day",
        "provider",
        "status",
        "matched",
        "missing_at_provider",
        "missing_here",
        "mismatched",
        "reversed",
        "balanced",
        "difference",
    )
    list_filter = ("provider", "status", "balanced")


@admin.register(ProviderFloat)
class ProviderFloatAdmin(ReadOnlyAdmin):
    list_display = ("provider", "available", "currency", "polled_at", "low", "refused_at", "error")
