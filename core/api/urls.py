from django.urls import path

from core.api import api_keys, auth, staff

urlpatterns = [
    path("auth/token/", auth.LoginApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", auth.RefreshApi.as_view(), name="token-refresh"),
    path("staff/", staff.StaffListCreateApi.as_view(), name="staff-list"),
    path("staff/<id:pk>/", staff.StaffDetailApi.as_view(), name="staff-detail"),
    path("sellers/<id:pk>/api-keys/", api_keys.ApiKeyListCreateApi.as_view(), name="api-key-list"),
    path("sellers/<id:pk>/api-keys/<id:key_id>/", api_keys.ApiKeyRevokeApi.as_view(), name="api-key-detail"),
]
