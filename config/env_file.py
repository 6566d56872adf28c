"""This checkout's `.env`: written once from `.env.example` with fresh secrets, never overwritten.

Plain Python (no Django), because the development settings call it before Django is configured:
the first `make up` or `manage.py` command of a checkout writes it, and every later one reads the
same key from it (`manage.py init_env` writes it on demand)."""

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Variables that hold secrets: left empty in .env.example, filled with fresh random values here.
GENERATED = {
    "SECRET_KEY": lambda: secrets.token_urlsafe(50),
    "FLOWER_BASIC_AUTH": lambda: f"admin:{secrets.token_urlsafe(18)}",
    "METRICS_TOKEN": lambda: secrets.token_urlsafe(32),
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
    "REDIS_PASSWORD": lambda: secrets.token_urlsafe(24),
}


def write_env_file(target: Path, example: Path = ROOT / ".env.example") -> list[str] | None:
    """Write `target` from `example` with the secrets generated; returns their names, or None
    when `target` already exists (left unchanged). Raises OSError if `example` is unreadable."""
    if target.exists():
        return None
    out, generated = [], []
    for line in example.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and key.strip() in GENERATED and not value.strip():
            line = f"{key}={GENERATED[key.strip()]()}"
            generated.append(key.strip())
        out.append(line)
    try:
        # O_EXCL: even a .env created a moment ago by another process is never overwritten.
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(out) + "\n")
    return generated
