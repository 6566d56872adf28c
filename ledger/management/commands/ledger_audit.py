from django.core.management.base import BaseCommand, CommandError

from core.models import Seller
from ledger.audit import audit_ledger


class Command(BaseCommand):
    help = "Check ledger invariants 1-7 for every seller (or one); exit non-zero on any breach."

    def add_arguments(self, parser):
        parser.add_argument("--seller", help="seller id or username (default: every seller)")
        parser.add_argument("--limit", type=int, default=1000, help="report at most this many breaches")

    def handle(self, *args, seller=None, limit=1000, **options):
        seller_id = None
        if seller is not None:
            found = (
                Seller.objects.filter(pk=int(seller))
                if seller.isdigit()
                else Seller.objects.filter(user__username=seller)
            )
            found = found.first()
            if found is None:
                raise CommandError(f"no seller {seller!r}")
            seller_id = found.pk
        breaches = audit_ledger(seller_id=seller_id, limit=limit)
        for breach in breaches:
            self.stderr.write(str(breach))
        scope = f"seller {seller_id}" if seller_id else f"{Seller.objects.count()} sellers"
        if breaches:
            raise CommandError(f"ledger audit FAILED for {scope}: {len(breaches)} breach(es)")
        self.stdout.write(f"ledger audit passed for {scope}")
