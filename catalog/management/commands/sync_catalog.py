"""`manage.py sync_catalog [--provider NAME]`: a configured provider's catalog (the default one's
unless named) into ours, now, with a progress bar
and a summary of what changed (the same service the periodic `catalog.sync` runs)."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.services.sync import catalog_sync
from providers import get_provider, provider_names
from providers.base import ProviderError


class Command(BaseCommand):
    help = "Sync the provider's countries, operators, prefixes and products into the catalog."

    def add_arguments(self, parser):
        parser.add_argument("--quiet-progress", action="store_true", help="no progress bar")
        parser.add_argument("--provider", help="the provider's name (default: the default one)")

    def handle(self, *args, **options):
        name = options.get("provider")
        if name and name not in provider_names():
            raise CommandError(f"--provider: {name!r} is not configured ({', '.join(provider_names())})")
        provider = get_provider(name or None)
        show = not options["quiet_progress"] and sys.stderr.isatty()
        with tqdm(unit=" products", desc=f"reading {provider.name}", disable=not show, file=self.stderr) as bar:
            try:
                summary = catalog_sync(provider=provider, progress=bar.update)
            except ProviderError as exc:
                raise CommandError(f"nothing changed: {exc}") from exc
        s = summary
        self.stdout.write(f"synced {s.products_seen} products from {s.provider}:")
        self.stdout.write(
            f"  products: {s.products_added} added, {s.products_changed} changed (new versions), "
            f"{s.products_withdrawn} withdrawn, {s.products_restored} listed again, "
            f"{s.products_unchanged} unchanged, {s.products_skipped} skipped"
        )
        self.stdout.write(
            f"  operators: {s.operators_added} added, {s.operators_changed} changed, "
            f"{s.operators_withdrawn} withdrawn, {s.operators_restored} listed again"
        )
        self.stdout.write(f"  numbering prefixes: {s.prefixes_added} added, {s.prefixes_removed} removed")
        for line in s.skipped[:20]:
            self.stdout.write(f"  skipped {line}")
