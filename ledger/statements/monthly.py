"""Last month's statement for every seller with entries in it (the beat's `ledger.monthly_statements`):
idempotent, as a seller has one statement per period."""

from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from ledger import events
from ledger.statements.models import Statement

# Sellers with an entry in [start, end): the account changed since `start`, then one probe of the
# (seller, created_at, seq) index each.
_ACTIVE = """SELECT a.seller_id FROM ledger_account a
 WHERE a.updated_at >= %(start)s
   AND EXISTS (SELECT 1 FROM ledger_entry e
                WHERE e.seller_id = a.seller_id AND e.created_at >= %(start)s AND e.created_at < %(end)s)
 ORDER BY a.seller_id"""

# A queued statement older than this lost its build's publish: the sweep builds it.
UNBUILT_AFTER = timedelta(minutes=10)


def last_month(now: datetime) -> tuple[datetime, datetime]:
    end = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    start = (end - timedelta(days=1)).replace(day=1)
    return start, end


def statements_monthly(*, now: datetime | None = None) -> int:
    """Records (queued) last month's statement of each seller with activity then; returns how many
    were new. Their builds are published after commit (`statement_requested`)."""
    start, end = last_month(now or timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_ACTIVE, {"start": start, "end": end})
        sellers = [row[0] for row in cursor.fetchall()]
    created = 0
    with transaction.atomic():
        existing = set(
            Statement.objects.filter(seller_id__in=sellers, period_start=start, period_end=end).values_list(
                "seller_id", flat=True
            )
        )
        new = Statement.objects.bulk_create(
            [Statement(seller_id=s, period_start=start, period_end=end) for s in sellers if s not in existing],
            ignore_conflicts=True,
        )
        for statement in Statement.objects.filter(
            seller_id__in=[s.seller_id for s in new], period_start=start, period_end=end, status="queued"
        ):
            events.statement_requested(statement_id=statement.pk)
            created += 1
    return created


def statements_unbuilt() -> list[int]:
    cutoff = timezone.now() - UNBUILT_AFTER
    return list(
        Statement.objects.filter(status=Statement.Status.QUEUED, created_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:1000]
    )
