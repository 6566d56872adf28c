"""The margin report: what the platform earned on the top-ups it delivered, between two instants,
grouped by day, operator, product or seller. A charge counts once it succeeded (its hold posted),
in the period of its `settled_at`; its margin is its price less its cost, as recorded when it was
sold (`ledger.models.Charge`). Charges recorded before the catalog carry no cost and are left out.

Read-only: one grouped query over the period's charges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate

from ledger.models import Charge

GROUPS = ("day", "operator", "product", "seller")

_KEYS = {
    "day": (TruncDate("settled_at", tzinfo=UTC), None),
    "operator": (F("operator_id"), F("operator__name")),
    "product": (F("product_id"), F("product__name")),
    "seller": (F("seller_id"), F("seller__name")),
}


@dataclass(frozen=True)
class MarginRow:
    key: str  # the day (ISO date) or the id of the operator, product or seller
    name: str
    charges: int
    revenue: int  # what the sellers paid (their debits)
    cost: int  # what the providers charge us
    margin: int  # revenue - cost


def margin_report(*, since: datetime, until: datetime, group_by: str) -> list[MarginRow]:
    """Succeeded, priced charges settled in [since, until), grouped and ordered by the key."""
    key, name = _KEYS[group_by]
    columns = {"group_key": key} | ({"group_name": name} if name is not None else {})
    rows = (
        Charge.objects.filter(
            status=Charge.Status.SUCCEEDED, cost__isnull=False, settled_at__gte=since, settled_at__lt=until
        )
        .annotate(**columns)
        .values(*columns)
        .annotate(charges=Count("id"), revenue=Sum("amount"), cost_total=Sum("cost"), margin=Sum(Charge.MARGIN))
        .order_by("group_key")
    )
    return [
        MarginRow(
            key=str(row["group_key"]),
            name=row.get("group_name") or str(row["group_key"]),
            charges=row["charges"],
            revenue=row["revenue"],
            cost=row["cost_total"],
            margin=row["margin"],
        )
        for row in rows
    ]
