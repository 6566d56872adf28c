"""An admin's switch on an operator or product: off, nothing is listed or quoted for it; a sync
never turns it back on."""

from catalog.models import Operator, Product
from core.errors import NotFoundError


def operator_set_enabled(*, operator_id: int, enabled: bool) -> Operator:
    if not Operator.objects.filter(pk=operator_id).update(enabled=enabled):
        raise NotFoundError()
    return Operator.objects.select_related("country").get(pk=operator_id)


def product_set_enabled(*, product_id: int, enabled: bool) -> Product:
    if not Product.objects.filter(pk=product_id).update(enabled=enabled):
        raise NotFoundError()
    return Product.objects.select_related("current_version").get(pk=product_id)
