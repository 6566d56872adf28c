"""Per-seller API keys for integrators (admin only). The full key is in the 201 answer and
nowhere else: only a hash is stored."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.response import Response

from core import selectors, services
from core.api.serializers import ApiKeyCreatedOutput, ApiKeyCreateInput, ApiKeyOutput
from core.errors import NotFoundError
from core.models import Seller, SellerAPIKey
from core.permissions import IsAdmin


def _seller(pk: int) -> Seller:
    seller = Seller.objects.filter(pk=pk).first()
    if seller is None:
        raise NotFoundError()
    return seller


class ApiKeyListCreateApi(ListAPIView):
    permission_classes = [IsAdmin]
    serializer_class = ApiKeyOutput

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no seller in the URL
            return SellerAPIKey.objects.none()
        return selectors.api_key_list(seller=_seller(self.kwargs["pk"]))

    @extend_schema(request=ApiKeyCreateInput, responses={201: ApiKeyCreatedOutput})
    def post(self, request, pk):
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        api_key, key = services.api_key_issue(seller=_seller(pk), name=data.validated_data["name"])
        api_key.key = key
        return Response(ApiKeyCreatedOutput(api_key).data, status=status.HTTP_201_CREATED)


class ApiKeyRevokeApi(GenericAPIView):
    permission_classes = [IsAdmin]
    serializer_class = ApiKeyOutput

    @extend_schema(responses={204: None})
    def delete(self, request, pk, key_id):
        services.api_key_revoke(seller=_seller(pk), key_id=key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
