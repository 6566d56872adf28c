"""This checkout's `.env`: written once from `.env.example` with fresh secrets, never overwritten.

Plain Python (no Django), because the development settings call it before Django is configured:
the first `make up` or `manage.py` command of a checkout writes it, and every later one reads the
same key from it (`manage.py init_env` writes it on demand)."""

import base64
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
    # An Ed25519 private key is any 32 random bytes (ledger/statements/signing.py).
    "STATEMENT_SIGNING_KEY": lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
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


def add_missing_secrets(target: Path, example: Path = ROOT / ".env.example") -> list[str]:
    """Append to an existing `target` the generated secrets it lacks (a checkout whose .env was
    written before a secret was added to .env.example); never changes a line already there."""
    if not target.exists():
        return []
    present = {line.partition("=")[0].strip() for line in target.read_text().splitlines() if "=" in line}
    wanted = [
        line.partition("=")[0].strip()
        for line in example.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    ]
    missing = [key for key in wanted if key in GENERATED and key not in present]
    if missing:
        with target.open("a") as fh:
            fh.write("".join(f"{key}={GENERATED[key]()}\n" for key in missing))
    return missing
