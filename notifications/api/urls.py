from django.urls import path

from notifications import stream
from notifications.api import views

urlpatterns = [
    path("events/", views.EventListApi.as_view(), name="event-list"),
    path("events/stream/", stream.event_stream, name="event-stream"),
    path("events/<id:pk>/", views.EventDetailApi.as_view(), name="event-detail"),
    path("webhook-endpoints/", views.EndpointListCreateApi.as_view(), name="webhook-endpoint-list"),
    path("webhook-endpoints/<id:pk>/", views.EndpointDetailApi.as_view(), name="webhook-endpoint-detail"),
    path(
        "webhook-endpoints/<id:pk>/rotate-secret/",
        views.EndpointRotateSecretApi.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path("webhook-endpoints/<id:pk>/test/", views.EndpointTestApi.as_view(), name="webhook-endpoint-test"),
    path("webhook-endpoints/<id:pk>/deliveries/", views.DeliveryListApi.as_view(), name="webhook-delivery-list"),
    path(
        "webhook-endpoints/<id:pk>/deliveries/<id:delivery_id>/redeliver/",
        views.DeliveryRedeliverApi.as_view(),
        name="webhook-delivery-redeliver",
    ),
    path("notification-settings/", views.FeedSettingsApi.as_view(), name="notification-settings"),
]
