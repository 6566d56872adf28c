"""Ledger domain errors: a stable `code` clients rely on and an HTTP status."""

from core.errors import DomainError, IdempotencyKeyReusedError, InvalidStateError, NotFoundError

__all__ = [
    "DomainError",
    "IdempotencyKeyReusedError",
    "InvalidStateError",
    "NotFoundError",
    "SellerInactiveError",
]


class SellerInactiveError(DomainError):
    code = "seller_inactive"
    http_status = 403
    default_detail = "This seller is deactivated."
