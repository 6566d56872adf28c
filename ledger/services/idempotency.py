"""Idempotency keys: one key names one intent of one seller forever.

The key is unique per seller in the database. A request that loses the insert race waits on the
unique index for the winner's commit, then reads the winner's row, so concurrent requests with one
key create exactly one object."""

import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

from django.db import IntegrityError, models, transaction

from ledger.errors import IdempotencyKeyReusedError

M = TypeVar("M", bound=models.Model)


def fingerprint(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_once(
    *, model: type[M], seller_id: int, key: str | None, fingerprint_: str, create: Callable[[], M]
) -> tuple[M, bool]:
    """Run `create` unless `key` already names an object. Returns (object, created).

    Must run inside a transaction; the savepoint keeps a lost race from aborting it."""
    if key is None:
        return create(), True
    existing = model.objects.filter(seller_id=seller_id, idempotency_key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                return create(), True
        except IntegrityError:
            existing = model.objects.filter(seller_id=seller_id, idempotency_key=key).first()
            if existing is None:
                raise
    if existing.request_fingerprint != fingerprint_:
        raise IdempotencyKeyReusedError()
    return existing, False
