"""The platform's Ed25519 key for checkpoints (docs/api.md, "Statements": the message signed, the
key's id and its rotation).

`STATEMENT_SIGNING_KEY` holds the private key as the base64 of its 32 raw bytes, or
`STATEMENT_SIGNING_KEY_FILE` names a PEM file (PKCS#8). A key's id is the first 16 hex digits of
the SHA-256 of its raw public key: every signature names the key that made it, so after a rotation
the old checkpoints still verify against the old public key, which `STATEMENT_RETIRED_PUBLIC_KEYS`
(base64 raw public keys, comma-separated) keeps published."""

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ledger.statements.chain import epoch_microseconds

ALGORITHM = "Ed25519"


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    raw: bytes
    current: bool

    @property
    def base64(self) -> str:
        return base64.b64encode(self.raw).decode()

    @property
    def pem(self) -> str:
        key = Ed25519PublicKey.from_public_bytes(self.raw)
        return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@cache
def signing_key() -> Ed25519PrivateKey:
    if settings.STATEMENT_SIGNING_KEY_FILE:
        key = serialization.load_pem_private_key(Path(settings.STATEMENT_SIGNING_KEY_FILE).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ImproperlyConfigured("STATEMENT_SIGNING_KEY_FILE must hold an Ed25519 private key")
        return key
    if not settings.STATEMENT_SIGNING_KEY:
        raise ImproperlyConfigured("set STATEMENT_SIGNING_KEY or STATEMENT_SIGNING_KEY_FILE to sign checkpoints")
    try:
        raw = base64.b64decode(settings.STATEMENT_SIGNING_KEY, validate=True)
    except ValueError as exc:
        raise ImproperlyConfigured("STATEMENT_SIGNING_KEY must be base64") from exc
    if len(raw) != 32:
        raise ImproperlyConfigured("STATEMENT_SIGNING_KEY must be the base64 of 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def published_keys() -> list[PublicKey]:
    """The current key first (none where no key is configured), then the retired ones still published."""
    configured = settings.STATEMENT_SIGNING_KEY or settings.STATEMENT_SIGNING_KEY_FILE
    current = _raw_public(signing_key()) if configured else b""
    keys = [PublicKey(key_id_of(current), current, True)] if current else []
    for item in settings.STATEMENT_RETIRED_PUBLIC_KEYS:
        raw = base64.b64decode(item)
        if raw != current:
            keys.append(PublicKey(key_id_of(raw), raw, False))
    return keys


def checkpoint_message(
    *,
    key_id: str,
    seller_id: int,
    seq: int,
    hash_: bytes,
    balance: int,
    entry_created_at: datetime | None,
    signed_at: datetime,
) -> bytes:
    """What a checkpoint's signature covers: the UTF-8 of
    `ledger-checkpoint-v1|<key id>|<seller>|<seq>|<hash hex>|<balance>|<entry time>|<signed time>`,
    times in microseconds since the Unix epoch (the entry time empty at seq 0)."""
    entry_at = "" if entry_created_at is None else epoch_microseconds(entry_created_at)
    fields = (
        "ledger-checkpoint-v1",
        key_id,
        seller_id,
        seq,
        hash_.hex(),
        balance,
        entry_at,
        epoch_microseconds(signed_at),
    )
    return "|".join(str(field) for field in fields).encode()


def sign(message_for_key) -> tuple[str, bytes]:
    """(key id, signature) with the current key; `message_for_key(key_id)` builds the message."""
    key = signing_key()
    key_id = key_id_of(_raw_public(key))
    return key_id, key.sign(message_for_key(key_id))
