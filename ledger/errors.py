"""Ledger domain errors: a stable `code` clients rely on and an HTTP status."""

from rest_framework import status

from core.errors import DomainError, IdempotencyKeyReusedError, InvalidStateError, NotFoundError

__all__ = [
    "BatchFileRefusedError",
    "BatchFileTooLargeError",
    "CallbackNotQueuedError",
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


class BatchFileRefusedError(DomainError):
    """Nothing of the file was stored: its first bytes show it cannot be a charge list."""

    code = "invalid"
    http_status = status.HTTP_400_BAD_REQUEST
    default_detail = "The file cannot be imported."


class BatchFileTooLargeError(DomainError):
    code = "file_too_large"
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The file is too large."


class CallbackNotQueuedError(DomainError):
    """What a `callback_received` subscriber raises when it cannot queue the callback: the provider
    is answered 503 and sends it again."""

    code = "service_unavailable"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The callback could not be queued; nothing was recorded. Send it again."
