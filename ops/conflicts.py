"""Admin endpoints of the provider conflicts (ledger/conflicts.py): the late successes waiting for
a decision, and the decision. A debit is applied by the seller's settle in a worker (never here);
booking the loss moves no money. Asking again for what is done already changes nothing."""

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import InvalidStateError, NotFoundError
from ledger.conflicts import (
    ConflictNotFoundError,
    ConflictStateError,
    conflict_book_loss,
    conflict_debit_request,
)
from ledger.models import ProviderConflict
from ops.provider_account import _Admin

DEBIT, BOOK_LOSS = "debit", "book_loss"


class ConflictOutput(serializers.ModelSerializer):
    class Meta:
        model = ProviderConflict
        fields = [
            "charge",
            "seller",
            "kind",
            "status",
            "amount",
            "detail",
            "answered",
            "first_seen_at",
            "last_seen_at",
            "requested_by",
            "requested_at",
            "refusal",
            "settled_at",
        ]


class ConflictSettleInput(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=[DEBIT, BOOK_LOSS],
        help_text="debit: the seller pays the top-up (an adjustment entry, only if its balance covers it); "
        "book_loss: the platform bears it",
    )


class ConflictFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=ProviderConflict.Status.choices)

    class Meta:
        model = ProviderConflict
        fields = ["status"]


class ConflictListApi(_Admin, ListAPIView):
    """The provider conflicts, oldest first (`?status=open`)."""

    serializer_class = ConflictOutput
    filterset_class = ConflictFilter
    queryset = ProviderConflict.objects.order_by("first_seen_at", "charge_id")


class ConflictSettleApi(_Admin, APIView):
    """Settle one conflict. `debit` answers 202 `debiting` (the seller's settle applies it, then
    `debited`, or back to `open` with `refusal` when the balance does not cover it) or 200 when it
    is debited already; `book_loss` answers 200 `loss_booked`. The other decision taken already: 409."""

    @extend_schema(request=ConflictSettleInput, responses={200: ConflictOutput, 202: ConflictOutput})
    def post(self, request, charge_id: int):
        data = ConflictSettleInput(data=request.data)
        data.is_valid(raise_exception=True)
        settle = conflict_debit_request if data.validated_data["action"] == DEBIT else conflict_book_loss
        try:
            conflict = settle(charge_id=charge_id, user_id=request.user.pk)
        except ConflictNotFoundError as exc:
            raise NotFoundError("No conflict for this charge.") from exc
        except ConflictStateError as exc:
            raise InvalidStateError(f"The conflict is {exc.status}.") from exc
        accepted = conflict.status == ProviderConflict.Status.DEBITING
        return Response(ConflictOutput(conflict).data, status=202 if accepted else 200)
