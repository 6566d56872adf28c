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
from providers import default_provider_name, get_provider, provider_names
from providers.base import InvalidCallback, Outcome


class InvalidCallbackError(DomainError):
    code = "invalid_callback"
    default_detail = "The callback's signature does not verify or its body is not a transaction."


def _provider(request):
    """The provider a callback is from: `?provider=` in the callback URL we gave it (send_all adds
    it when several are configured), else the default one."""
    name = request.query_params.get("provider") or None
    if name is not None and name not in provider_names():
        raise InvalidCallback(f"no provider named {name!r}")
    return get_provider(name)


class ProviderCallbackApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(request=None, responses={204: None}, auth=[])
    def post(self, request):
        try:
            provider = _provider(request)
            answer = provider.parse_callback(request.headers, request.body)
        except InvalidCallback as exc:
            raise InvalidCallbackError() from exc
        asked = asked_by_external_id([answer.external_id or ""]).get(answer.external_id or "")
        if asked is not None and (asked.provider or default_provider_name()) != provider.name:
            asked = None  # not the provider this charge was sent to: nothing it says settles it
        if asked is None or answer.outcome not in (Outcome.SUCCEEDED, Outcome.FAILED):
            return Response(status=status.HTTP_204_NO_CONTENT)
        if why := mismatch(asked, answer):
            record_mismatches([(asked, why, answer)])
        else:
            record_answers([answer_from(asked, answer)])
        return Response(status=status.HTTP_204_NO_CONTENT)
