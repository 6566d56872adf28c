"""The provider's callbacks: its final answer about a charge, signed (Standard Webhooks).

Recorded as the charge's answer, exactly as a fulfilment worker records one, and applied by the
seller's settle; a duplicate, a late callback or one about a charge already answered changes
nothing. No credentials: the signature is the authentication."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from ledger.fulfilment.service import Answer, charge_id_of, record_answers
from ledger.providers import get_provider
from ledger.providers.base import InvalidCallback, Outcome


class InvalidCallbackError(DomainError):
    code = "invalid_callback"
    default_detail = "The callback's signature does not verify or its body is not a transaction."


class ProviderCallbackApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(request=None, responses={204: None}, auth=[])
    def post(self, request):
        try:
            answer = get_provider().parse_callback(request.headers, request.body)
        except InvalidCallback as exc:
            raise InvalidCallbackError() from exc
        charge_id = charge_id_of(answer.external_id or "")
        if charge_id is not None and answer.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            record_answers([Answer(charge_id, answer.outcome.value, answer.failure_code, answer.provider_reference)])
        return Response(status=status.HTTP_204_NO_CONTENT)
