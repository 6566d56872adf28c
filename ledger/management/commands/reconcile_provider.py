"""Compare our charges with the provider's own record over a window: matched, missing on either
side, and amount mismatches. Exits non-zero when the two sides disagree."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime, parse_duration

from ledger.fulfilment.reconcile import provider_window
from providers import provider_names
from providers.base import ProviderError


def _moment(value: str):
    """An ISO 8601 time, or a duration back from now (`2h`, `30m`, `1d`, or `HH:MM:SS`)."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if value and value[-1] in units and value[:-1].isdigit():
        return timezone.now() - timedelta(**{units[value[-1]]: int(value[:-1])})
    moment = parse_datetime(value)
    if moment is None:
        duration = parse_duration(value)
        if duration is None:
            raise CommandError(f"{value!r} is neither an ISO 8601 time nor a duration such as 2h")
        return timezone.now() - duration
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = "Compare our charges with the provider's transactions over a window."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="ISO 8601 time, or a duration back from now (2h, 1d)")
        parser.add_argument("--until", help="ISO 8601 time (default: now)")
        parser.add_argument("--provider", help="the provider's name (default: the default one)")

    def handle(self, *args, since: str, until: str | None, provider: str | None = None, **options):
        start, end = _moment(since), _moment(until) if until else timezone.now()
        if provider and provider not in provider_names():
            raise CommandError(f"--provider: {provider!r} is not configured ({', '.join(provider_names())})")
        try:
            report = provider_window(since=start, until=end, provider=provider or None)
        except ProviderError as exc:
            raise CommandError(f"the provider could not be asked: {exc}") from exc
        self.stdout.write(f"window {start.isoformat()} .. {end.isoformat()}")
        self.stdout.write(f"matched: {report.matched}")
        self.stdout.write(f"succeeded here, missing at the provider: {len(report.missing_at_provider)}")
        for charge_id in report.missing_at_provider[:1000]:
            self.stdout.write(f"  charge {charge_id}")
        self.stdout.write(f"completed at the provider, not succeeded here: {len(report.missing_here)}")
        for external in report.missing_here[:1000]:
            self.stdout.write(f"  {external}")
        self.stdout.write(f"amount mismatches: {len(report.amount_mismatches)}")
        for charge_id, ours, theirs in report.amount_mismatches[:1000]:
            self.stdout.write(f"  charge {charge_id}: ours {ours}, provider {theirs}")
        if not report.clean:
            raise CommandError("our charges and the provider's record disagree")
