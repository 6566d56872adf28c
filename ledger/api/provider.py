"""The provider's callbacks: its final answer about a charge (signed with Standard Webhooks where
the provider signs them).

The web only checks what it can without asking anyone (the provider named, the signature, the
body's shape) and queues the callback for a fulfilment worker (ledger/fulfilment/callbacks.py),
which asks the provider where a callback is only a hint, checks the answer against what we asked
and records it. No provider call runs in a web request. No credentials: the signature is the
authentication."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import DomainError
from ledger import events
from providers import get_provider, provider_names
from providers.base import InvalidCallback


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

    @extend_schema(request=None, responses={202: None}, auth=[])
    def post(self, request):
        try:
            provider = _provider(request)
            notice = provider.parse_callback(request.headers, request.body)
        except InvalidCallback as exc:
            raise InvalidCallbackError() from exc
        events.callback_received(provider=provider.name, notice=notice)  # 503 if it cannot be queued
        return Response(status=status.HTTP_202_ACCEPTED)
