"""`GET /api/v1/events/stream/`: the seller's events live, as Server-Sent Events.

Served only by the ASGI process (`uvicorn config.asgi:application`, docs/notifications.md), where
an idle stream is a suspended coroutine, not one of gunicorn's few threads; the front proxy sends
this one path there. Under WSGI the view refuses (a stream would hold a thread for its lifetime).

Each event is one message whose `id:` is the seller's event `seq`; a client reconnecting with
`Last-Event-ID` resumes right after it. Seqs commit in order (notifications.models), so polling
`seq > last` never skips one. Authentication is the API's own (the same `Authorization` header),
run through DRF's authenticators."""

import asyncio
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from django.http import JsonResponse, StreamingHttpResponse
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.settings import api_settings

from core.errors import DatabaseUnavailableError
from core.roles import seller_of
from notifications.models import Event, SellerFeed
from notifications.payload import COLUMNS, event_text

PAGE = 500
KEEPALIVE_SECONDS = 15.0


def _error(status: int, detail: str, code: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def _unavailable() -> JsonResponse:
    """The database went away under the stream's first reads: nothing was recorded (it only
    reads), so the API's outage answer, 503 with Retry-After."""
    error = DatabaseUnavailableError()
    response = _error(error.http_status, error.detail, error.code)
    response["Retry-After"] = str(error.retry_after)
    return response


def _in_pool(function):
    """`function` run by `sync_to_async` on a thread of the loop's pool. Django's request signals,
    which close broken and expired connections, never reach those threads, so it does the same
    first: a connection broken by a terminated backend would otherwise fail every later call on
    its thread ("connection already closed")."""

    def run(*args):
        close_old_connections()
        return function(*args)

    return sync_to_async(run, thread_sensitive=False)


def _refusal(exc: exceptions.APIException) -> JsonResponse:
    detail, code = exc.detail, exc.default_code
    if isinstance(detail, dict):  # simplejwt's token errors carry their own detail and code
        detail, code = detail.get("detail", detail), detail.get("code", code)
    elif isinstance(detail, list):
        detail = detail[0]
    return _error(exc.status_code, str(detail), str(code))


def _authenticated_seller_id(http_request) -> int | None:
    request = Request(http_request, authenticators=[cls() for cls in api_settings.DEFAULT_AUTHENTICATION_CLASSES])
    user = request.user  # None when nobody authenticated (UNAUTHENTICATED_USER is None here)
    if user is None or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    seller = seller_of(user)
    return None if seller is None else seller.pk


def _last_seq(seller_id: int) -> int:
    return SellerFeed.objects.filter(seller_id=seller_id).values_list("last_seq", flat=True).first() or 0


def _events_after(seller_id: int, after: int) -> list[tuple]:
    try:
        return list(
            Event.objects.filter(seller_id=seller_id, seq__gt=after).order_by("seq").values_list(*COLUMNS)[:PAGE]
        )
    except DatabaseError:
        connection.close()  # this pool thread's connection; the next poll opens a new one
        return []


def _resume_point(http_request) -> int | None:
    raw = http_request.headers.get("Last-Event-ID") or http_request.GET.get("after")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise exceptions.ValidationError("Last-Event-ID must be an event seq (a whole number).")
    return int(raw)


async def _frames(seller_id: int, after: int):
    poll = settings.NOTIFICATIONS_STREAM_POLL
    fetch = _in_pool(_events_after)
    yield "retry: 2000\n\n"
    quiet_since = time.monotonic()
    while True:
        rows = await fetch(seller_id, after)
        for row in rows:
            after = row[4]  # seq
            yield f"id: {after}\ndata: {event_text(*row)}\n\n"
        if rows:
            quiet_since = time.monotonic()
            if len(rows) == PAGE:
                continue
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(poll)


async def event_stream(request):
    if not isinstance(request, ASGIRequest):
        return _error(404, "The event stream is served by the stream process (docs/notifications.md).", "not_found")
    if request.method != "GET":
        return _error(405, f'Method "{request.method}" not allowed.', "method_not_allowed")
    try:
        seller_id = await _in_pool(_authenticated_seller_id)(request)
        after = _resume_point(request)
        if seller_id is None:
            return _error(403, "Only a seller has an event stream.", "permission_denied")
        if after is None:
            after = await _in_pool(_last_seq)(seller_id)
    except exceptions.APIException as exc:
        return _refusal(exc)
    except (OperationalError, InterfaceError):
        return _unavailable()
    response = StreamingHttpResponse(_frames(seller_id, after), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
