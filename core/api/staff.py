"""Staff users and their roles (admin only)."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.response import Response

from core import selectors, services
from core.api.serializers import StaffCreateInput, StaffOutput, StaffUpdateInput, new_username
from core.permissions import IsAdmin
from core.roles import Role


def _output(user) -> dict:
    return StaffOutput({**vars(user), "role": services.role_of_any(user)}).data


class StaffListCreateApi(ListAPIView):
    permission_classes = [IsAdmin]
    serializer_class = StaffOutput

    def get_queryset(self):
        return selectors.staff_list()

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([_output(user) for user in page])

    @extend_schema(request=StaffCreateInput, responses={201: StaffOutput})
    def post(self, request):
        data = StaffCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        with new_username(data.validated_data["username"]):
            user = services.staff_create(**{**data.validated_data, "role": Role(data.validated_data["role"])})
        return Response(_output(user), status=status.HTTP_201_CREATED)


class StaffDetailApi(GenericAPIView):
    permission_classes = [IsAdmin]
    serializer_class = StaffOutput

    def get(self, request, pk):
        return Response(_output(services.staff_get(user_id=pk)))

    @extend_schema(request=StaffUpdateInput, responses={200: StaffOutput})
    def patch(self, request, pk):
        user = services.staff_get(user_id=pk)
        data = StaffUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        role = data.validated_data.get("role")
        user = services.staff_update(
            user=user,
            acting_user=request.user,
            role=Role(role) if role else None,
            is_active=data.validated_data.get("is_active"),
        )
        return Response(_output(user))
