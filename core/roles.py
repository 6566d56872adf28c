"""Who may do what. Roles: `admin` (superuser or the admin group), `approver` and `auditor`
(Django groups), and `seller` (a user with a Seller profile)."""

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    APPROVER = "approver"
    AUDITOR = "auditor"
    SELLER = "seller"


STAFF_ROLES = (Role.ADMIN, Role.APPROVER, Role.AUDITOR)

# Set on the user object by the authentication classes (which load group names in the same query
# as the user), so a request checks its role without another round trip.
_GROUPS_ATTR = "_ledger_group_names"


def remember_groups(user, names) -> None:
    setattr(user, _GROUPS_ATTR, frozenset(names))


def _group_names(user) -> frozenset[str]:
    names = getattr(user, _GROUPS_ATTR, None)
    if names is None:
        names = frozenset(user.groups.values_list("name", flat=True))
        remember_groups(user, names)
    return names


def role_of(user) -> Role | None:
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return Role.ADMIN
    groups = _group_names(user)
    for role in STAFF_ROLES:
        if role.value in groups:
            return role
    if hasattr(user, "seller"):
        return Role.SELLER
    return None


def seller_of(user):
    """The Seller the user acts as, or None for staff."""
    return getattr(user, "seller", None) if role_of(user) == Role.SELLER else None
