"""The charge POST's fast path in front of Django's handler: the same answer without the cost of
the request cycle it does not need.

Inside Django, the fast path (`charge_fast_path.py`) spent a fifth of the web's CPU on the
request cycle around it: eight middleware, URL resolution, the handler's wrapping. For this one
request most of that work does nothing: the static files middleware serves other paths, the
session, CSRF (the view is exempt), user and messages middleware are never read. What does act
(host validation, SSL redirect, security and frame headers, Content-Length) is done here by
calling those same middleware's own methods, and the connection handling by Django's own signals,
so the answer is the one the full cycle gives, byte for byte (`tests/api/test_charge_wsgi.py`).

Anything the fast path does not take (see its docstring), and any request the middleware would
answer themselves (a redirect, a bad host), goes to Django's handler with the same environ and
body. An error raised while recording is answered as Django answers it (`handler500`), never
retried by the full path, since the insert may have committed.

When `MIDDLEWARE` lists anything this module does not know to be inert or applied here, it steps
aside entirely: a new middleware must not be skipped silently."""

from __future__ import annotations

import io
import logging

from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost, PermissionDenied
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.urls import resolve, reverse
from django.utils.module_loading import import_string

from ledger.api.charge_fast_path import accept_charge

logger = logging.getLogger(__name__)

# Called here, as Django calls them: in `MIDDLEWARE`'s order for requests, the reverse for responses.
APPLIED_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
# Leave a charge POST's answer as it is.
INERT_MIDDLEWARE = frozenset(
    {
        "core.api.handlers.ApiErrorPagesMiddleware",  # rewrites HTML error pages only; these answers are JSON
        "whitenoise.middleware.WhiteNoiseMiddleware",  # serves STATIC_URL only
        "django.contrib.sessions.middleware.SessionMiddleware",  # session never read or written
        "django.middleware.csrf.CsrfViewMiddleware",  # the DRF view is csrf_exempt
        "django.contrib.auth.middleware.AuthenticationMiddleware",  # request.user never read
        "django.contrib.messages.middleware.MessageMiddleware",  # no message stored
    }
)


def with_charge_fast_path(django_app: WSGIHandler):
    """The WSGI application to serve: `django_app`, with charge POSTs tried on the fast path
    first. `django_app` itself where the middleware in use make that unsafe."""
    unknown = [m for m in settings.MIDDLEWARE if m not in INERT_MIDDLEWARE and m not in APPLIED_MIDDLEWARE]
    if unknown:
        logger.info("charge fast path: Django's handler serves every request (middleware %s)", unknown)
        return django_app
    path = reverse("charge-list")
    allow = resolve(path).func.fast_post_allow
    middleware = [import_string(m)(_unreachable) for m in settings.MIDDLEWARE if m in APPLIED_MIDDLEWARE]
    hooks = (
        [layer.process_request for layer in middleware if hasattr(layer, "process_request")],
        [layer.process_response for layer in reversed(middleware)],
    )
    handler_class = type(django_app)

    def application(environ, start_response):
        if (
            environ.get("PATH_INFO") == path
            and environ.get("REQUEST_METHOD") == "POST"
            and settings.LEDGER_CHARGE_FAST_PATH
        ):
            response = _answer(environ, hooks, allow, handler_class)
            if response is not None:
                return _start(response, start_response)
        return django_app(environ, start_response)

    application.django_app = django_app
    return application


def _unreachable(request):
    raise AssertionError("the fast path calls each middleware's hooks, never the next layer")


def _answer(environ: dict, hooks: tuple[list, list], allow: str, handler_class):
    """The response to send, or None to hand the request (environ and body intact) to Django."""
    signals.request_started.send(sender=handler_class, environ=environ)
    request = WSGIRequest(environ)
    try:
        for process_request in hooks[0]:
            if process_request(request) is not None:
                return _hand_on(request)  # a redirect: the full cycle answers it
    except (DisallowedHost, PermissionDenied):
        return _hand_on(request)  # the full cycle words the refusal
    try:
        response = accept_charge(request, allow=allow)
    except Exception as exc:  # as Django's handler does; the insert may have committed
        response = response_for_exception(request, exc)
    if response is None:
        return _hand_on(request)
    for process_response in hooks[1]:
        response = process_response(request, response)
    response._handler_class = handler_class  # close() sends request_finished, as Django's does
    return response


def _hand_on(request: WSGIRequest) -> None:
    if hasattr(request, "_body"):  # the fast path read it: Django's handler reads it again
        request.environ["wsgi.input"] = io.BytesIO(request._body)
    return None


def _start(response, start_response):
    """What `WSGIHandler.__call__` does with a response (no file responses here)."""
    status = f"{response.status_code} {response.reason_phrase}"
    headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
    start_response(status, headers)
    return response
