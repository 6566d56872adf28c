"""Thin views: validate with a small serializer, call one service or selector, serialize.
None of them changes a balance."""

from django.db.models import Count, Max, Sum
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.filters import OrderingFilter
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.reads import HeavyReadListMixin
from core.api.serializers import new_username
from core.models import Seller
from core.pagination import CursorPagination
from core.parsers import JSONParser
from core.permissions import CanDecideDeposits, IsAdmin, IsSeller, IsSellerOrStaffReader, IsStaffReader
from core.roles import role_of, seller_of
from ledger import selectors
from ledger.api import filters
from ledger.api.serializers import (
    ChargeCreateInput,
    ChargeOutput,
    DepositCreateInput,
    DepositOutput,
    DepositRejectInput,
    EntryOutput,
    MeOutput,
    ReconcileOutput,
    SellerCreateInput,
    SellerOutput,
    charge_representation,
    idempotency_key_from,
)
from ledger.errors import SellerInactiveError
from ledger.models import Account, Charge, Entry
from ledger.services.charges import charge_submit
from ledger.services.deposits import deposit_approve, deposit_reject, deposit_request
from ledger.services.sellers import seller_create

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="1-255 printable characters; the same key and body return the original object.",
)


CHARGE_LOCATION_HEADER = OpenApiParameter(
    "Location",
    str,
    OpenApiParameter.HEADER,
    response=[202, 200],
    description="Where to poll the charge: `/api/v1/charges/{id}/`.",
)


class MeApi(APIView):
    @extend_schema(responses=MeOutput)
    def get(self, request):
        seller = seller_of(request.user)
        data = {
            "id": request.user.pk,
            "username": request.user.get_username(),
            "role": role_of(request.user),
            "seller": None,
        }
        if seller is not None:
            data["seller"] = {
                "id": seller.pk,
                "name": seller.name,
                **Account.objects.values("balance", "held").get(seller=seller),
            }
        return Response(MeOutput(data).data)


class _Ordered:
    """`?ordering=` on lists (newest first by default)."""

    filter_backends = [DjangoFilterBackend, OrderingFilter]
    ordering_fields = ["id", "created_at", "amount"]
    ordering = ["-id"]


class SellerScopedMixin:
    """A seller sees only its own rows; staff see all, optionally `?seller=`. Another seller's
    object is simply not in the queryset, so it answers 404."""

    permission_classes = [IsSellerOrStaffReader]
    selector = None

    def get_queryset(self):
        return type(self).selector(seller=seller_of(self.request.user))


class SellerListCreateApi(ListAPIView):
    serializer_class = SellerOutput

    def get_permissions(self):
        return [IsAdmin()] if self.request.method == "POST" else [IsStaffReader()]

    def get_queryset(self):
        return Seller.objects.select_related("user", "account").order_by("id")

    @extend_schema(request=SellerCreateInput, responses={201: SellerOutput})
    def post(self, request):
        data = SellerCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        with new_username(data.validated_data["username"]):
            seller = seller_create(**data.validated_data)
        return Response(SellerOutput(seller).data, status=status.HTTP_201_CREATED)


class SellerDetailApi(GenericAPIView):
    permission_classes = [IsStaffReader]
    serializer_class = SellerOutput
    queryset = Seller.objects.select_related("user", "account")

    def get(self, request, pk):
        return Response(SellerOutput(self.get_object()).data)


class SellerReconcileApi(GenericAPIView):
    permission_classes = [IsStaffReader]
    queryset = Seller.objects.all()

    @extend_schema(responses=ReconcileOutput)
    def get(self, request, pk):
        seller = self.get_object()
        account = Account.objects.get(seller=seller)
        sums = Entry.objects.filter(seller=seller).aggregate(total=Sum("amount"), n=Count("id"), last=Max("seq"))
        ledger_sum, last_seq = sums["total"] or 0, sums["last"] or 0
        open_holds = Charge.objects.filter(seller=seller, stage__in=Charge.OPEN_STAGES).aggregate(total=Sum("amount"))[
            "total"
        ]
        data = {
            "seller": seller.pk,
            "balance": account.balance,
            "held": account.held,
            "open_holds": open_holds or 0,
            "ledger_sum": ledger_sum,
            "entries": sums["n"],
            "last_seq": last_seq,
            "ok": account.balance == ledger_sum
            and account.last_seq == last_seq == sums["n"]
            and account.held == (open_holds or 0),
        }
        return Response(ReconcileOutput(data).data)


class DepositListCreateApi(HeavyReadListMixin, _Ordered, SellerScopedMixin, ListAPIView):
    serializer_class = DepositOutput
    filterset_class = filters.DepositFilter
    selector = staticmethod(selectors.deposit_list)

    def get_permissions(self):
        return [IsSeller()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(
        request=DepositCreateInput, responses={201: DepositOutput, 200: DepositOutput}, parameters=[IDEMPOTENCY_HEADER]
    )
    def post(self, request):
        key = idempotency_key_from(request)
        data = DepositCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        deposit, created = deposit_request(seller=seller_of(request.user), idempotency_key=key, **data.validated_data)
        return Response(DepositOutput(deposit).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class DepositDetailApi(SellerScopedMixin, GenericAPIView):
    serializer_class = DepositOutput
    selector = staticmethod(selectors.deposit_list)

    def get(self, request, pk):
        return Response(DepositOutput(self.get_object()).data)


class DepositApproveApi(APIView):
    permission_classes = [CanDecideDeposits]

    @extend_schema(request=None, responses={202: DepositOutput})
    def post(self, request, pk):
        deposit = deposit_approve(deposit_id=pk, approved_by=request.user)
        return Response(DepositOutput(deposit).data, status=status.HTTP_202_ACCEPTED)


class DepositRejectApi(APIView):
    permission_classes = [CanDecideDeposits]

    @extend_schema(request=DepositRejectInput, responses={200: DepositOutput})
    def post(self, request, pk):
        data = DepositRejectInput(data=request.data)
        data.is_valid(raise_exception=True)
        deposit = deposit_reject(deposit_id=pk, rejected_by=request.user, reason=data.validated_data["reason"])
        return Response(DepositOutput(deposit).data)


class ChargeListCreateApi(HeavyReadListMixin, _Ordered, SellerScopedMixin, ListAPIView):
    """List a seller's charges; POST records one (the API's hot path): authenticated and
    authorized like every endpoint (a seller only), then one guarded statement."""

    serializer_class = ChargeOutput
    filterset_class = filters.ChargeFilter
    selector = staticmethod(selectors.charge_list)
    parser_classes = [JSONParser]

    def get_permissions(self):
        return [IsSeller()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(
        request=ChargeCreateInput,
        responses={202: ChargeOutput, 200: ChargeOutput},
        parameters=[IDEMPOTENCY_HEADER, CHARGE_LOCATION_HEADER],
    )
    def post(self, request):
        key = idempotency_key_from(request)
        data = ChargeCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            charge, created = charge_submit(
                seller_id=request.user.seller.pk, idempotency_key=key, **data.validated_data
            )
        except SellerInactiveError as exc:
            # Deactivated since authentication loaded the user: what authentication answers an
            # inactive user (docs/api.md).
            raise exceptions.AuthenticationFailed("User is inactive", code="user_inactive") from exc
        return Response(
            charge_representation(charge),
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
            headers={"Location": f"/api/v1/charges/{charge.pk}/"},
        )


class ChargeDetailApi(SellerScopedMixin, GenericAPIView):
    serializer_class = ChargeOutput
    selector = staticmethod(selectors.charge_list)

    def get(self, request, pk):
        return Response(ChargeOutput(self.get_object()).data)


class TransactionListApi(HeavyReadListMixin, SellerScopedMixin, ListAPIView):
    serializer_class = EntryOutput
    filterset_class = filters.EntryFilter
    pagination_class = CursorPagination
    selector = staticmethod(selectors.entry_list)
