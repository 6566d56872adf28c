"""The statements endpoints: balance at a time, signed checkpoints and their public keys,
statements (docs/api.md, "Statements"). A seller reads its own; staff name the seller."""

import django_filters
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.filters import IdFilter
from core.models import Seller
from core.permissions import IsSellerOrStaffReader
from core.roles import seller_of
from ledger.api.statement_serializers import (
    BalanceAtOutput,
    BalanceAtQuery,
    CheckpointOutput,
    PublicKeysOutput,
    StatementOutput,
    StatementRequestInput,
)
from ledger.errors import InvalidStateError
from ledger.models import ChainCheckpoint, Statement
from ledger.statements.balance_at import balance_at
from ledger.statements.build import statement_pieces, statement_request
from ledger.statements.signing import published_keys


def scoped_seller_id(request, requested: int | None) -> int:
    """The seller a request reads: a seller its own (naming another is a 404, as any object of
    another seller), staff the one `seller` names (required)."""
    own = seller_of(request.user)
    if own is not None:
        if requested is not None and requested != own.pk:
            raise NotFound()
        return own.pk
    if requested is None:
        raise ValidationError({"seller": ["Staff must name the seller."]})
    if not Seller.objects.filter(pk=requested).exists():
        raise NotFound()
    return requested


class BalanceAtApi(APIView):
    permission_classes = [IsSellerOrStaffReader]

    @extend_schema(parameters=[BalanceAtQuery], responses=BalanceAtOutput)
    def get(self, request):
        query = BalanceAtQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        seller_id = scoped_seller_id(request, query.validated_data.get("seller"))
        at = query.validated_data.get("at") or timezone.now()
        return Response(BalanceAtOutput(balance_at(seller_id=seller_id, at=at)).data)


class PublicKeyApi(APIView):
    """The public keys checkpoints are signed with: anyone may fetch them (no credentials)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=PublicKeysOutput)
    def get(self, request):
        return Response(PublicKeysOutput({"keys": published_keys()}).data)


class CheckpointFilter(django_filters.FilterSet):
    seller = IdFilter(field_name="seller_id")
    seq_after = IdFilter(field_name="seq", lookup_expr="gt")

    class Meta:
        model = ChainCheckpoint
        fields = ["seller", "seq_after"]


class CheckpointListApi(ListAPIView):
    """A seller's signed checkpoints, newest first (staff: all, `?seller=`)."""

    permission_classes = [IsSellerOrStaffReader]
    serializer_class = CheckpointOutput
    filterset_class = CheckpointFilter

    def get_queryset(self):
        seller = seller_of(self.request.user)
        queryset = ChainCheckpoint.objects.order_by("-seq", "-id")
        return queryset.filter(seller=seller) if seller is not None else queryset.order_by("-id")


class StatementFilter(django_filters.FilterSet):
    seller = IdFilter(field_name="seller_id")

    class Meta:
        model = Statement
        fields = ["seller"]


class _StatementScoped:
    permission_classes = [IsSellerOrStaffReader]

    def get_queryset(self):
        seller = seller_of(self.request.user)
        queryset = Statement.objects.select_related("checkpoint").order_by("-id")
        return queryset.filter(seller=seller) if seller is not None else queryset


class StatementListCreateApi(_StatementScoped, ListAPIView):
    """Statements of a period, built by a worker; POST asks for one (the same period answers the
    same statement)."""

    serializer_class = StatementOutput
    filterset_class = StatementFilter

    @extend_schema(request=StatementRequestInput, responses={202: StatementOutput, 200: StatementOutput})
    def post(self, request):
        data = StatementRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        seller_id = scoped_seller_id(request, data.validated_data.get("seller"))
        statement, created = statement_request(
            seller_id=seller_id,
            period_start=data.validated_data["period_start"],
            period_end=data.validated_data["period_end"],
            requested_by=request.user,
        )
        return Response(
            StatementOutput(statement).data,
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
            headers={"Location": f"/api/v1/statements/{statement.pk}/"},
        )


class StatementDetailApi(_StatementScoped, GenericAPIView):
    serializer_class = StatementOutput

    def get(self, request, pk):
        return Response(StatementOutput(self.get_object()).data)


_MEDIA = {"json": "application/json", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


class StatementDownloadApi(_StatementScoped, GenericAPIView):
    """The built statement in one format, streamed from its stored pieces."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request, pk, fmt):
        if fmt not in _MEDIA:
            raise NotFound()
        statement = self.get_object()
        if statement.status != Statement.Status.READY:
            raise InvalidStateError("The statement is not ready yet.")
        if fmt not in statement.formats:
            raise NotFound(f"This statement has no {fmt} (too many entries for a PDF: use the CSV).")
        response = StreamingHttpResponse(statement_pieces(statement=statement, fmt=fmt), content_type=_MEDIA[fmt])
        name = f"statement-{statement.seller_id}-{statement.pk}.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
