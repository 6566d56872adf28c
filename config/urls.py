from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core.api.views import HealthApi, ReadyApi

# The docs pages render only HTML templates: an OPTIONS answer (DRF's metadata) has no template
# to render with and was a 500, so they answer GET and HEAD only.
_PAGE = {"url_name": "schema", "http_method_names": ["get", "head"]}

api_v1 = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(**_PAGE), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(**_PAGE, template_name="api/redoc.html"), name="redoc"),
    path("health/", HealthApi.as_view(), name="health"),
    path("ready/", ReadyApi.as_view(), name="ready"),
    path("", include("ledger.api.urls")),  # before the rest: it holds the charge POST, the hot path
    path("", include("core.api.urls")),
    path("", include("notifications.api.urls")),
    path("", include("catalog.api.urls")),
    path("ops/", include("ops.urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),  # first: the API is what is resolved thousands of times a second
    path("admin/", admin.site.urls),
]

handler400 = "core.api.handlers.bad_request"
handler403 = "core.api.handlers.permission_denied"
handler404 = "core.api.handlers.page_not_found"
handler500 = "core.api.handlers.server_error"
