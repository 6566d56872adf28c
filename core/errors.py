"""Domain errors and the one exception handler that renders every API failure as
`{"detail": ..., "code": ...}` (plus `errors` for validation failures)."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback


class DomainError(Exception):
    code = "error"
    http_status = status.HTTP_400_BAD_REQUEST
    default_detail = "The request could not be completed."

    def __init__(self, detail: str | None = None, **extra):
        self.detail = detail or self.default_detail
        self.extra = extra  # more of the contract's body for this code (e.g. the amounts that would work)
        super().__init__(self.detail)


class NotFoundError(DomainError):
    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."


class RequestTooLargeError(DomainError):
    code = "request_too_large"
    http_status = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."


class InvalidStateError(DomainError):
    code = "invalid_state"
    http_status = status.HTTP_409_CONFLICT
    default_detail = "The object is not in a state that allows this."


class IdempotencyKeyReusedError(DomainError):
    code = "idempotency_key_reused"
    http_status = status.HTTP_409_CONFLICT
    default_detail = "This Idempotency-Key was already used with a different request body."


class DatabaseUnavailableError(DomainError):
    code = "service_unavailable"
    http_status = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; nothing was recorded. Retry shortly."
    retry_after = 1  # seconds: a failover or a restarted PostgreSQL takes about that to accept again


class RetryWithSameKeyError(DatabaseUnavailableError):
    """The connection to the database was lost after a write of a request that carries an
    Idempotency-Key: whether it committed is unknown, but a retry with the same key is safe and
    answers the one object, whether this attempt recorded it or not. So the client is told to
    retry, as for any other database outage (503, Retry-After), and how."""

    default_detail = (
        "The database connection was lost while recording. Retry after Retry-After with the same "
        "Idempotency-Key: it answers the one object, whether or not this attempt recorded it."
    )


class OutcomeUnknownError(DomainError):
    """The connection to the database was lost after a write of a request without an
    Idempotency-Key: nobody can tell whether it committed, and a blind retry could record it
    twice. Not a "retry" 503: the client checks first (docs/api.md, Errors)."""

    code = "outcome_unknown"
    http_status = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_detail = (
        "The database connection was lost while recording; the request may have been applied. "
        "Check before sending it again, or send it with an Idempotency-Key."
    )


# SQLSTATEs of a session the server ended (PostgreSQL's Appendix A): class 08, connection
# exception; admin_shutdown (pg_terminate_backend, a fast shutdown), crash_shutdown,
# cannot_connect_now. A libpq that passes the server's last message on reports one of these.
_SESSION_ENDED = ("08", "57P01", "57P02", "57P03")


def connection_lost(exc: Exception) -> bool:
    """A database error of the connection itself: a terminated backend, a reset socket (no
    SQLSTATE, or one of a session the server ended). Other errors the server reports on a live
    session (deadlocks, constraints) carry another code."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    sqlstate = getattr(exc.__cause__, "pgcode", None)
    return sqlstate is None or sqlstate.startswith(_SESSION_ENDED)


def nothing_recorded_before(exc: Exception, request) -> bool:
    """A connection-level database error in a request that has sent nothing that can write
    (`request.database_writes`, core/db/writes.py): answering "retry" is then honest. After a
    possible write, or where nothing watched the request, the outcome is unknown: only a retry
    with the request's Idempotency-Key is safe (`keyed`)."""
    writes = getattr(request, "database_writes", None)
    return isinstance(exc, (OperationalError, InterfaceError)) and writes is not None and not writes.may_have_written


def keyed(request) -> bool:
    """Whether the request's writes are keyed: its view read a valid Idempotency-Key
    (`ledger.api.serializers.idempotency_key_from` sets `request.idempotency_key`), so a retry
    with that key records at most one object and answers it."""
    return getattr(request, "idempotency_key", None) is not None


_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
}


def _first_message(errors) -> str:
    if isinstance(errors, dict):
        for value in errors.values():
            return _first_message(value)
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


def _detail_text(exc) -> str:
    detail = getattr(exc, "detail", None)
    if isinstance(detail, dict):  # simplejwt's InvalidToken carries {"detail", "code", "messages"}
        detail = detail.get("detail", "")
    if isinstance(detail, list) and detail:
        detail = detail[0]
    return str(detail) if detail else str(exc)


def api_exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLargeError()
    elif isinstance(exc, SuspiciousOperation):
        # Too many fields or files, a malformed multipart body: the client's fault, never a 500.
        exc = exceptions.ParseError("The request body could not be parsed.")
    elif nothing_recorded_before(exc, context.get("request")):
        exc = DatabaseUnavailableError()
    elif connection_lost(exc):
        exc = RetryWithSameKeyError() if keyed(context.get("request")) else OutcomeUnknownError()
    if isinstance(exc, OutcomeUnknownError):
        set_rollback()
    if isinstance(exc, DatabaseUnavailableError):
        set_rollback()
        return Response(
            {"detail": exc.detail, "code": exc.code},
            status=exc.http_status,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, DomainError):
        return Response({"detail": exc.detail, "code": exc.code, **exc.extra}, status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {
            "detail": f"Invalid input: {_first_message(errors)}",
            "code": "invalid",
            "errors": errors,
        }
        return response
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        code = "not_authenticated"
    else:
        code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), None)
        code = code or getattr(getattr(exc, "detail", None), "code", None) or "error"
    response.data = {"detail": _detail_text(exc), "code": code}
    return response
