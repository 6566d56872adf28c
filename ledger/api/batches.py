"""Charge batch endpoints: upload a charge list, follow its progress, download its results.

Thin as the other views: the upload comes from `ledger.services.batch_upload`, the results rows
from `ledger.selectors`;
this module only speaks HTTP. The import itself runs on the import worker, never in a request, and
every GET only reads (progress is written by the import and by the settle)."""

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from core.api.reads import HeavyReadListMixin
from core.permissions import IsSeller, IsSellerOrStaffReader
from core.roles import seller_of
from ledger import selectors
from ledger.api.serializers import idempotency_key_from
from ledger.csv_export import csv_lines, started
from ledger.errors import BatchFileRefusedError, BatchFileTooLargeError
from ledger.models import ChargeBatch
from ledger.services.batch_upload import batch_max_bytes, batch_upload

# Multipart framing around the file: boundaries, part headers, the file name.
_MULTIPART_OVERHEAD = 64 * 1024


class ChargeBatchUploadInput(serializers.Serializer):
    # Empty files reach the service, which refuses them with the same message as the CLI.
    file = serializers.FileField(allow_empty_file=True, max_length=255)


class BatchErrorOutput(serializers.Serializer):
    line = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class ChargeBatchOutput(serializers.ModelSerializer):
    # Charges not settled yet (valid rows less the outcomes the settles counted so far).
    queued = serializers.IntegerField(read_only=True)
    # While validating: rows the import worker has read so far.
    rows_read = serializers.IntegerField(source="rows_read_so_far", read_only=True)
    errors = BatchErrorOutput(many=True)

    class Meta:
        model = ChargeBatch
        fields = [
            "id",
            "seller",
            "filename",
            "status",
            "rows_read",
            "total_rows",
            "valid_rows",
            "invalid_rows",
            "queued",
            "succeeded",
            "failed",
            "succeeded_amount",
            "errors",
            "created_at",
            "completed_at",
        ]


class _BatchScopedMixin:
    # A seller sees only its own batches (another seller's is a 404); staff see all.
    def get_queryset(self):
        params = self.request.query_params
        seller_filter = params.get("seller", "")
        queryset = selectors.batch_list(
            seller=seller_of(self.request.user),
            seller_filter=int(seller_filter) if seller_filter.isdecimal() and len(seller_filter) < 19 else None,
        ).select_related("running_import")
        if params.get("status") in ChargeBatch.Status.values:
            queryset = queryset.filter(status=params["status"])
        return queryset


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="1-255 printable characters; the same key and the same file return the original batch.",
)


class ChargeBatchListCreateApi(HeavyReadListMixin, _BatchScopedMixin, ListAPIView):
    """Upload a charge list (CSV: phone_number, amount[, reference]); list batches, newest first."""

    serializer_class = ChargeBatchOutput
    parser_classes = [MultiPartParser]

    def get_permissions(self):
        return [IsSeller()] if self.request.method == "POST" else [IsSellerOrStaffReader()]

    @extend_schema(
        parameters=[
            OpenApiParameter("seller", int, description="staff only: one seller's batches"),
            OpenApiParameter("status", str, enum=ChargeBatch.Status.values),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": ChargeBatchUploadInput},
        responses={
            202: ChargeBatchOutput,
            200: ChargeBatchOutput,
            413: OpenApiResponse(description="The file is larger than LEDGER_BATCH_MAX_BYTES (code file_too_large)."),
        },
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        # Before the body is read: an oversize upload is refused without spooling it to disk.
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length.isdecimal() and int(length) > batch_max_bytes() + _MULTIPART_OVERHEAD:
            raise BatchFileTooLargeError(f"The upload is {length} bytes; the limit is {batch_max_bytes()} bytes.")
        key = idempotency_key_from(request)
        data = ChargeBatchUploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        try:
            batch, created = batch_upload(
                seller=seller_of(request.user),
                file=upload,
                filename=upload.name or "",
                idempotency_key=key,
                created_by=request.user,
            )
        except BatchFileRefusedError as exc:
            body = {"detail": exc.detail, "code": exc.code, "errors": {"file": [exc.detail]}}
            return Response(body, status=exc.http_status)
        return Response(
            ChargeBatchOutput(batch).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
            headers={"Location": f"/api/v1/charge-batches/{batch.pk}/"},
        )


class ChargeBatchDetailApi(_BatchScopedMixin, GenericAPIView):
    """A batch with its validation errors and live progress; `completed` once all rows settled,
    `rejected` when none could be queued."""

    permission_classes = [IsSellerOrStaffReader]
    serializer_class = ChargeBatchOutput

    def get(self, request, pk):
        return Response(ChargeBatchOutput(self.get_object()).data)


class ChargeBatchResultsApi(_BatchScopedMixin, GenericAPIView):
    """CSV, streamed: the input columns, then charge_id, status, failure_code, balance_after, line
    and error; one row per input row in file order (rejected rows with status `invalid`)."""

    permission_classes = [IsSellerOrStaffReader]
    serializer_class = ChargeBatchOutput  # for the schema's path parameter only

    def perform_content_negotiation(self, request, force=False):
        # The body is CSV whatever the Accept header says; errors still render as JSON.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request, pk):
        batch = self.get_object()
        header, rows = selectors.batch_results(batch=batch)
        response = StreamingHttpResponse(started(csv_lines(header, rows)), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="charge-batch-{batch.pk}-results.csv"'
        return response
