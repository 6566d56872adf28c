"""`GET /transactions/export/`: the rows of `GET /transactions/` as CSV, streamed."""

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, NullIf
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.generics import GenericAPIView

from core.db.replica import stream_heavy
from ledger import selectors
from ledger.api import filters
from ledger.api.views import SellerScopedMixin
from ledger.csv_export import csv_lines, started

_EXPORT_COLUMNS = {
    "id": F("id"),
    "seller": F("seller_id"),
    "seq": F("seq"),
    "kind": F("kind"),
    "amount": F("amount"),
    "balance_before": F("balance_before"),
    "balance_after": F("balance_after"),
    "charge": F("charge_id"),
    "deposit": F("deposit_id"),
    "created_at": F("created_at"),
    # Not in the JSON rows, but what a person reading the export looks for first.
    "phone_number": F("charge__phone_number"),
    "reference": Coalesce(NullIf("charge__reference", Value("")), NullIf("deposit__reference", Value(""))),
}


class TransactionExportApi(SellerScopedMixin, GenericAPIView):
    """The rows of `GET /transactions/` (same scoping and filters, newest first) as CSV, streamed."""

    filterset_class = filters.EntryFilter
    selector = staticmethod(selectors.entry_list)
    pagination_class = None

    def perform_content_negotiation(self, request, force=False):
        # The success answer is CSV whatever `Accept` says; errors keep the JSON error shape.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="CSV, streamed.")})
    def get(self, request):
        queryset = self.filter_queryset(self.get_queryset()).order_by("-id")
        rows = queryset.values_list(*_EXPORT_COLUMNS.values())
        # On the replica while it keeps up (core/db/replica.py), from its first row to its last.
        lines = csv_lines(list(_EXPORT_COLUMNS), stream_heavy(lambda alias: _in_snapshot(rows.using(alias), alias)))
        response = StreamingHttpResponse(started(lines), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="transactions.csv"'
        return response


_CREATED_AT = list(_EXPORT_COLUMNS).index("created_at")


def _in_snapshot(rows, alias: str):
    # One transaction for the whole download: a consistent snapshot, and a server-side cursor
    # that fetches chunk by chunk instead of the whole result at once.
    with transaction.atomic(using=alias):
        for row in rows.iterator(chunk_size=2000):
            row = list(row)
            row[_CREATED_AT] = row[_CREATED_AT].isoformat()
            yield row
