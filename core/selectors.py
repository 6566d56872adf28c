"""Reads of the core app."""

from django.contrib.auth import get_user_model
from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Q, QuerySet

from core.models import Seller, SellerAPIKey
from core.roles import STAFF_ROLES


def staff_list() -> QuerySet:
    """Superusers and members of a staff role's group, active or not, with their group names."""
    names = [role.value for role in STAFF_ROLES]
    return (
        get_user_model()
        .objects.filter(Q(is_superuser=True) | Q(groups__name__in=names))
        .distinct()
        .annotate(group_names=ArrayAgg("groups__name", filter=Q(groups__isnull=False), default=[], distinct=True))
        .order_by("id")
    )


def api_key_list(*, seller: Seller) -> QuerySet[SellerAPIKey]:
    return SellerAPIKey.objects.filter(seller=seller).order_by("-created", "-id")
