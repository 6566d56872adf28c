"""The provider's callbacks: its final answer about a charge, signed (Standard Webhooks).

Checked against what we asked (ledger/fulfilment/identity.py), recorded as the charge's answer,
exactly as a fulfilment worker records one, and applied by the seller's settle; a duplicate, a late callback or one about a charge already answered changes
nothing, except a success for a charge we failed (a late success: a conflict for an admin). A
reversal goes through the same lifecycle function as a lookup's (a refund of a succeeded charge,
the release of a held one). No credentials: the signature is the authentication."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from ledger.fulfilment.identity import mismatch
from ledger.fulfilment.service import (
    answer_from,
    asked_by_external_id,
    record_answers,
    record_late_successes,
    record_mismatches,
    record_reversals,
    reversal_from,
)
from providers import default_provider_name, get_provider, provider_names
from providers.base import InvalidCallback, Outcome


class InvalidCallbackError(DomainError):
    code = "invalid_callback"
    default_detail = "The callback's signature does not verify or its body is not a transaction."


class ReversalNotPostedError(DomainError):
    code = "not_ready"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The charge's success is not posted yet: send the reversal again later."


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
        if asked is None or answer.outcome not in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.REVERSED):
            return Response(status=status.HTTP_204_NO_CONTENT)
        if why := mismatch(asked, answer):
            record_mismatches([(asked, why, answer)])
        elif answer.outcome is Outcome.REVERSED:
            if record_reversals([reversal_from(asked, answer)]).not_posted_yet:
                raise ReversalNotPostedError()  # the provider retries its callback
        else:
            record_answers([answer_from(asked, answer)])
            if answer.outcome is Outcome.SUCCEEDED:
                record_late_successes([(asked, answer)])  # only a charge we failed: a conflict
        return Response(status=status.HTTP_204_NO_CONTENT)
