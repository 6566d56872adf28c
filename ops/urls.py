from django.urls import path

from ops.api import MetricsApi, OpsQueuesApi

urlpatterns = [
    path("queues/", OpsQueuesApi.as_view(), name="ops-queues"),
    path("metrics/", MetricsApi.as_view(), name="ops-metrics"),
]
