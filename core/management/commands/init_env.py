import os
import secrets
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

ROOT = Path(__file__).resolve().parents[3]

# Variables that hold secrets: left empty in .env.example, filled with fresh random values here.
GENERATED = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "FLOWER_BASIC_AUTH": lambda: f"admin:{secrets.token_urlsafe(18)}",
    "METRICS_TOKEN": lambda: secrets.token_urlsafe(32),
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "REDIS_PASSWORD": lambda: secrets.token_urlsafe(24),
}


class Command(BaseCommand):
    help = (
        "Write .env from .env.example with freshly generated secrets (SECRET_KEY, Flower, metrics, "
        "database and Redis passwords). Never overwrites an existing .env."
    )

    def add_arguments(self, parser):
        parser.add_argument("--path", default=str(ROOT / ".env"))
        parser.add_argument("--example", default=str(ROOT / ".env.example"))

    def handle(self, *args, path: str, example: str, **options):
        target = Path(path)
        if target.exists():
            self.stdout.write(f"{target} already exists; left unchanged (delete it first to start over)")
            return
        try:
            lines = Path(example).read_text().splitlines()
        except OSError as exc:
            raise CommandError(f"cannot read {example}: {exc}") from exc
        out, generated = [], []
        for line in lines:
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#") and key.strip() in GENERATED and not value.strip():
                line = f"{key}={GENERATED[key.strip()]()}"
                generated.append(key.strip())
            out.append(line)
        try:
            # O_EXCL: even a .env created a moment ago by someone else is never overwritten.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            self.stdout.write(f"{target} already exists; left unchanged")
            return
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(out) + "\n")
        self.stdout.write(f"wrote {target} (mode 600) with fresh {', '.join(generated) or 'nothing'}")
