"""Writes of the core app: staff users, their roles, and sellers' API keys."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from core.errors import InvalidStateError, NotFoundError
from core.models import Seller, SellerAPIKey
from core.roles import STAFF_ROLES, Role, remember_groups


def _role_assign(*, user, role: Role) -> None:
    user.groups.remove(*Group.objects.filter(name__in=[r.value for r in STAFF_ROLES]))
    user.groups.add(Group.objects.get_or_create(name=role.value)[0])
    remember_groups(user, [role.value])


@transaction.atomic
def staff_create(*, username: str, password: str, role: Role):
    """A staff user holding one role. `is_staff` lets admins also use the admin site; what each
    role may do there comes from its group's permissions (see `core.apps`)."""
    user = get_user_model().objects.create_user(username=username, password=password, is_staff=True)
    _role_assign(user=user, role=role)
    return user


@transaction.atomic
def staff_update(*, user, acting_user, role: Role | None = None, is_active: bool | None = None):
    if user.pk == acting_user.pk and (is_active is False or (role is not None and role != Role.ADMIN)):
        # An admin locking themselves out is never what they meant.
        raise InvalidStateError("You cannot deactivate or demote yourself.")
    if role is not None and user.is_superuser and role != Role.ADMIN:
        raise InvalidStateError("Superusers are always admins; change them in the admin site.")
    if is_active is not None and user.is_superuser and not acting_user.is_superuser:
        # Otherwise an admin by role could lock the superusers out and keep the system to itself.
        raise InvalidStateError("Only a superuser can deactivate or reactivate a superuser.")
    if role is not None:
        _role_assign(user=user, role=role)
    if is_active is not None and user.is_active != is_active:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
    return user


def staff_get(*, user_id: int):
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None or role_of_any(user) is None:
        raise NotFoundError()
    return user


def role_of_any(user) -> Role | None:
    """The staff role of a user, active or not (an inactive user has no role for permissions,
    but still shows in the staff list with the role it would have)."""
    if user.is_superuser:
        return Role.ADMIN
    names = (
        set(user.groups.values_list("name", flat=True)) if not hasattr(user, "group_names") else set(user.group_names)
    )
    return next((role for role in STAFF_ROLES if role.value in names), None)


def api_key_issue(*, seller: Seller, name: str) -> tuple[SellerAPIKey, str]:
    """Returns the stored key and the full key, which exists only in this return value."""
    return SellerAPIKey.objects.create_key(seller=seller, name=name)


def api_key_revoke(*, seller: Seller, key_id: int) -> None:
    api_key = SellerAPIKey.objects.filter(seller=seller, pk=key_id).first()
    if api_key is None:
        raise NotFoundError()
    if not api_key.revoked:
        api_key.revoked = True
        api_key.save(update_fields=["revoked"])
