from django.contrib.auth import get_user_model
from django.db import transaction

from core.models import Seller
from ledger.models import Account


@transaction.atomic
def seller_create(*, username: str, password: str, name: str) -> Seller:
    """A seller is a user, its profile and an empty account, created together."""
    user = get_user_model().objects.create_user(username=username, password=password)
    seller = Seller.objects.create(user=user, name=name)
    Account.objects.create(seller=seller)
    return seller
