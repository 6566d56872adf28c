"""Typed helpers that build sellers, staff and funded accounts through the services."""

import itertools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from core.models import Seller
from ledger.services.deposits import deposit_approve, deposit_request
from ledger.services.sellers import seller_create

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery"


def make_seller(name: str | None = None) -> Seller:
    n = next(_counter)
    return seller_create(username=f"seller{n}-{id(object())}", password=PASSWORD, name=name or f"Seller {n}")


def make_admin():
    n = next(_counter)
    return get_user_model().objects.create_superuser(username=f"admin{n}-{id(object())}", password=PASSWORD)


def make_staff(role: str):
    n = next(_counter)
    user = get_user_model().objects.create_user(username=f"{role}{n}-{id(object())}", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def request_and_approve(seller: Seller, amount: int, admin) -> int:
    """File a deposit and approve it; the worker (or a direct settle) credits it."""
    deposit, _ = deposit_request(seller=seller, amount=amount)
    deposit_approve(deposit_id=deposit.pk, approved_by=admin)
    return deposit.pk
