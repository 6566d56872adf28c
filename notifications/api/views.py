"""The notifications API: the event feed, webhook endpoints, their deliveries, and settings.

A seller sees only its own rows (another seller's answer 404, as they are not in the queryset);
staff read everything, the feed optionally `?seller=`. Only sellers change endpoints."""

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView, ListAPIView, RetrieveAPIView, get_object_or_404
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.filters import DateTimeFilter, IdFilter
from core.pagination import CursorPagination
from core.permissions import IsSeller, IsSellerOrStaffReader
from core.roles import seller_of
from notifications import selectors, services
from notifications.api import serializers as s
from notifications.models import Event, SellerFeed, WebhookDelivery


class EventFilter(django_filters.FilterSet):
    seller = IdFilter(field_name="seller_id")
    type = django_filters.ChoiceFilter(choices=Event.Type.choices)
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Event
        fields = ["seller", "type", "created_after"]


class _ReadSellerWriteMixin:
    def get_permissions(self):
        return [IsSellerOrStaffReader()] if self.request.method == "GET" else [IsSeller()]


class EventListApi(ListAPIView):
    permission_classes = [IsSellerOrStaffReader]
    serializer_class = s.EventOutput
    filterset_class = EventFilter
    pagination_class = CursorPagination

    def get_queryset(self):
        return selectors.event_list(seller=seller_of(self.request.user))


class EventDetailApi(RetrieveAPIView):
    permission_classes = [IsSellerOrStaffReader]
    serializer_class = s.EventOutput

    def get_queryset(self):
        return selectors.event_list(seller=seller_of(self.request.user))


class EndpointListCreateApi(_ReadSellerWriteMixin, ListAPIView):
    serializer_class = s.EndpointOutput
    pagination_class = CursorPagination

    def get_queryset(self):
        return selectors.endpoint_list(seller=seller_of(self.request.user))

    @extend_schema(request=s.EndpointCreateInput, responses={201: s.EndpointWithSecretOutput})
    def post(self, request):
        data = s.EndpointCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(seller=seller_of(request.user), **data.validated_data)
        return Response(s.EndpointWithSecretOutput(endpoint).data, status=status.HTTP_201_CREATED)


class _EndpointMixin(_ReadSellerWriteMixin):
    serializer_class = s.EndpointOutput

    def get_queryset(self):
        return selectors.endpoint_list(seller=seller_of(self.request.user))


class EndpointDetailApi(_EndpointMixin, GenericAPIView):
    def get(self, request, pk):
        return Response(s.EndpointOutput(self.get_object()).data)

    @extend_schema(request=s.EndpointUpdateInput, responses={200: s.EndpointOutput})
    def patch(self, request, pk):
        data = s.EndpointUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(endpoint=self.get_object(), **data.validated_data)
        return Response(s.EndpointOutput(endpoint).data)

    def delete(self, request, pk):
        services.endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateSecretApi(_EndpointMixin, GenericAPIView):
    @extend_schema(request=None, responses={200: s.EndpointWithSecretOutput})
    def post(self, request, pk):
        endpoint = services.endpoint_rotate_secret(endpoint=self.get_object())
        return Response(s.EndpointWithSecretOutput(endpoint).data)


class EndpointTestApi(_EndpointMixin, GenericAPIView):
    @extend_schema(request=None, responses={202: s.DeliveryOutput})
    def post(self, request, pk):
        delivery = services.endpoint_send_test(endpoint=self.get_object())
        return Response(s.DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


def _endpoint(request, pk):
    return get_object_or_404(selectors.endpoint_list(seller=seller_of(request.user)), pk=pk)


class DeliveryListApi(ListAPIView):
    """An endpoint's deliveries, newest first: attempts, last status code and duration, next attempt."""

    permission_classes = [IsSellerOrStaffReader]
    serializer_class = s.DeliveryOutput
    pagination_class = CursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular's schema generation
            return WebhookDelivery.objects.none()
        return selectors.delivery_list(endpoint=_endpoint(self.request, self.kwargs["pk"]))


class DeliveryRedeliverApi(APIView):
    permission_classes = [IsSeller]

    @extend_schema(request=None, responses={202: s.DeliveryOutput})
    def post(self, request, pk, delivery_id):
        delivery = get_object_or_404(selectors.delivery_list(endpoint=_endpoint(request, pk)), pk=delivery_id)
        delivery = services.delivery_redeliver(delivery=delivery)
        return Response(s.DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class FeedSettingsApi(GenericAPIView):
    """The seller's notification settings: the `balance.low` threshold (null: none)."""

    permission_classes = [IsSeller]
    serializer_class = s.FeedSettingsSerializer

    def get_object(self):
        # One object per seller (also what DRF's OPTIONS metadata asks for).
        return SellerFeed.objects.filter(seller=seller_of(self.request.user)).first() or SellerFeed()

    def get(self, request):
        return Response(s.FeedSettingsSerializer(self.get_object()).data)

    def put(self, request):
        data = s.FeedSettingsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feed = services.feed_settings_update(seller=seller_of(request.user), **data.validated_data)
        return Response(s.FeedSettingsSerializer(feed).data)
