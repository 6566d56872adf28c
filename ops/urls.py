from django.urls import path

from ops.api import MetricsApi, OpsQueuesApi
from ops.conflicts import ConflictListApi, ConflictSettleApi
from ops.provider_account import ProviderCloseListApi, ProviderCloseRequestApi, ProviderFundingApi

urlpatterns = [
    path("queues/", OpsQueuesApi.as_view(), name="ops-queues"),
    path("metrics/", MetricsApi.as_view(), name="ops-metrics"),
    path("provider-close/", ProviderCloseRequestApi.as_view(), name="ops-provider-close"),
    path("provider-closes/", ProviderCloseListApi.as_view(), name="ops-provider-closes"),
    path("conflicts/", ConflictListApi.as_view(), name="ops-conflicts"),
    path("conflicts/<int:charge_id>/settle/", ConflictSettleApi.as_view(), name="ops-conflict-settle"),
    path("provider-funding/", ProviderFundingApi.as_view(), name="ops-provider-funding"),
]
