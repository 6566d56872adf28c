"""The daily close of a provider for one UTC day (ledger/provider_account/close.py): prints the
result it keeps, exits non-zero when the records disagree or the money equation does not balance."""

from datetime import date, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ledger.provider_account.close import EARLIEST_DAY, close_day
from ledger.provider_account.models import ProviderClose
from providers import get_provider, provider_names


class Command(BaseCommand):
    help = "Close a UTC day of the provider: its record and balance against our charges and funding."

    def add_arguments(self, parser):
        parser.add_argument("--date", required=True, help="the UTC day, YYYY-MM-DD")
        parser.add_argument("--provider", help="the provider's name (default: the default one)")

    def handle(self, *args, date: str, provider: str | None, **options):
        try:
            day = _day(date)
        except ValueError as exc:
            raise CommandError(f"--date: {date!r} is not YYYY-MM-DD") from exc
        if not EARLIEST_DAY <= day <= timezone.now().date():
            raise CommandError(f"--date: a day from {EARLIEST_DAY} to today")
        if provider and provider not in provider_names():
            raise CommandError(f"--provider: {provider!r} is not configured ({', '.join(provider_names())})")
        adapter = get_provider(provider or None)
        close = close_day(adapter, day)
        self._print(close)
        if close.status == ProviderClose.Status.FAILED:
            raise CommandError(f"the provider could not be read: {close.error}")
        if close.missing_at_provider or close.missing_here or close.mismatched or close.balanced is False:
            raise CommandError("the provider's record or balance and ours disagree")

    def _print(self, close: ProviderClose) -> None:
        write = self.stdout.write
        write(f"close of {close.provider} on {close.day}: {close.status}")
        write(f"our charges sent: {close.charges}; their transactions: {close.transactions}")
        write(f"matched: {close.matched}; still open: {close.still_open}; reversed: {close.reversed}")
        for kind in ("missing_at_provider", "missing_here", "amount_mismatches", "currency_mismatches", "reversals"):
            listed = close.discrepancies.get(kind, [])
            write(f"{kind}: {len(listed)}{' (first ones)' if len(listed) >= 1000 else ''}")
            for item in listed:
                write(f"  {item}")
        write(
            f"balance ({close.currency}): start {close.start_balance} (at {close.start_polled_at}), "
            f"end {close.end_balance} (at {close.end_polled_at})"
        )
        write(
            f"funding {close.funding} - delivered cost {close.delivered_cost} + reversed cost {close.reversed_cost}"
            f" ({close.uncosted} delivered without a cost)"
        )
        write(f"difference: {close.difference}; balanced: {close.balanced}")


def _day(value: str) -> date:
    return datetime.strptime(value, "%Y-%m-%d").date()
