"""The provider's callbacks: its final answer about a charge, signed (Standard Webhooks).

Checked against what we asked (ledger/fulfilment/identity.py), recorded as the charge's answer,
exactly as a fulfilment worker records one, and applied by the seller's settle; a duplicate, a late callback or one about a charge already answered changes
nothing. No credentials: the signature is the authentication."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from ledger.fulfilment.identity import mismatch
from ledger.fulfilment.service import answer_from, asked_by_external_id, record_answers, record_mismatches
from providers import get_provider
from providers.base import InvalidCallback, Outcome


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
        asked = asked_by_external_id([answer.external_id or ""]).get(answer.external_id or "")
        if asked is None or answer.outcome not in (Outcome.SUCCEEDED, Outcome.FAILED):
            return Response(status=status.HTTP_204_NO_CONTENT)
        if why := mismatch(asked, answer):
            record_mismatches([(asked, why, answer)])
        else:
            record_answers([answer_from(asked, answer)])
        return Response(status=status.HTTP_204_NO_CONTENT)
