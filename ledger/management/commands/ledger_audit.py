from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.models import Seller
from ledger.audit import audit_ledger, audit_ledger_incremental


class Command(BaseCommand):
    help = (
        "Check ledger invariants 1-8 over every entry of every seller (or one); exit non-zero on any"
        " breach. --incremental runs the periodic audit instead (new entries since each checkpoint)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seller", help="seller id or username (default: every seller)")
        parser.add_argument("--limit", type=int, default=1000, help="report at most this many breaches")
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="what the periodic ledger.audit task does: check what is new since each seller's"
            " checkpoint, re-verify the sellers verified in full longest ago, move the checkpoints",
        )
        parser.add_argument(
            "--full-sellers",
            type=int,
            default=None,
            help="with --incremental: sellers to re-verify in full (default LEDGER_AUDIT_FULL_SELLERS_PER_RUN)",
        )

    def handle(self, *args, seller=None, limit=1000, incremental=False, full_sellers=None, **options):
        if incremental:
            if seller is not None:
                raise CommandError("--incremental covers every seller; use the full audit for one")
            self._incremental(
                limit, settings.LEDGER_AUDIT_FULL_SELLERS_PER_RUN if full_sellers is None else full_sellers
            )
            return
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

    def _incremental(self, limit: int, full_sellers: int) -> None:
        run = audit_ledger_incremental(full_sellers=full_sellers, limit=limit)
        if run.skipped:
            raise CommandError("another ledger audit is running; nothing checked")
        for breach in run.breaches:
            self.stderr.write(str(breach))
        s = run.summary()
        scope = (
            f"{s['sellers']} sellers ({s['full_sellers']} in full), {s['entries']} entries, {s['charges']} charges,"
            f" {s['deposits']} deposits in {s['seconds']} s; {s['checkpoints_advanced']} checkpoints moved"
        )
        if run.breaches:
            raise CommandError(f"incremental ledger audit FAILED: {len(run.breaches)} breach(es); {scope}")
        self.stdout.write(f"incremental ledger audit passed: {scope}")
