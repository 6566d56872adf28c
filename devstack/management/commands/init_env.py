from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from config.env_file import ROOT, write_env_file


class Command(BaseCommand):
    help = (
        "Write .env from .env.example with freshly generated secrets (SECRET_KEY, Flower, metrics, "
        "database and Redis passwords). Never overwrites an existing .env."
    )
    # It writes the file the settings read: it must run even where the checks would fail.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--path", default=str(ROOT / ".env"))
        parser.add_argument("--example", default=str(ROOT / ".env.example"))

    def handle(self, *args, path: str, example: str, **options):
        target = Path(path)
        try:
            generated = write_env_file(target, Path(example))
        except OSError as exc:
            raise CommandError(f"cannot read {example}: {exc}") from exc
        if generated is None:
            self.stdout.write(f"{target} already exists; left unchanged (delete it first to start over)")
        else:
            self.stdout.write(f"wrote {target} (mode 600) with fresh {', '.join(generated) or 'nothing'}")
