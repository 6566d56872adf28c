"""`manage.py load_prefixes FILE.csv [--provider NAME] [--replace]`: numbering prefixes for the
operators of a provider that publishes none (docs/operations.md, "The catalog")."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalog.services.prefixes import prefixes_load
from providers import get_provider


class Command(BaseCommand):
    help = "Load numbering prefixes (CSV with columns operator,prefix; operator = the provider's operator id)."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--provider", help="the provider's name in the catalog (default: the configured one)")
        parser.add_argument("--replace", action="store_true", help="remove the named operators' other prefixes")

    def handle(self, *args, **options):
        provider = options["provider"] or get_provider().name
        try:
            text = options["file"].read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        result = prefixes_load(provider=provider, text=text, replace=options["replace"])
        if result.problems:
            for problem in result.problems[:20]:
                self.stderr.write(f"  {problem}")
            raise CommandError(f"nothing loaded: {len(result.problems)} problems")
        self.stdout.write(f"prefixes: {result.added} added, {result.already} already there")
