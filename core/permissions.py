from rest_framework.permissions import BasePermission

from core.roles import STAFF_ROLES, Role, role_of


class _RolePermission(BasePermission):
    allowed: tuple[Role, ...] = ()

    def has_permission(self, request, view) -> bool:
        return role_of(request.user) in self.allowed


class IsAdmin(_RolePermission):
    allowed = (Role.ADMIN,)


class IsStaffReader(_RolePermission):
    """Admins, approvers and auditors read everything."""

    allowed = STAFF_ROLES


class CanDecideDeposits(_RolePermission):
    allowed = (Role.ADMIN, Role.APPROVER)


class IsSeller(_RolePermission):
    allowed = (Role.SELLER,)


class IsSellerOrStaffReader(_RolePermission):
    allowed = (*STAFF_ROLES, Role.SELLER)
