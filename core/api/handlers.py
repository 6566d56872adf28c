"""Errors Django answers itself (no DRF view ran: an unknown URL, a refused Host, an uncaught
exception) in the API's one error shape under /api/, and Django's usual pages elsewhere (admin).

Two parts, because Django has two ways of rendering them: the handler views below
(`handler400` ... in config/urls.py) when DEBUG is off, and its technical pages when DEBUG is on,
which ignore those handlers and list settings and tracebacks. `ApiErrorPagesMiddleware` replaces
any HTML error page under /api/, so the API answers the same in every settings module."""

from http import HTTPStatus

from django.http import JsonResponse
from django.views import defaults

_ERRORS = {
    400: ("Bad request.", "bad_request"),
    403: ("You do not have permission to perform this action.", "permission_denied"),
    404: ("Not found.", "not_found"),
    500: ("Internal server error.", "server_error"),
}


def _api(request) -> bool:
    return request.path.startswith("/api/")


def api_error_response(status: int) -> JsonResponse:
    if status in _ERRORS:
        detail, code = _ERRORS[status]
    else:
        try:
            detail, code = f"{HTTPStatus(status).phrase}.", "error"
        except ValueError:  # a status code the standard does not name
            detail, code = "The request could not be completed.", "error"
    return JsonResponse({"detail": detail, "code": code}, status=status)


def bad_request(request, exception=None):
    return api_error_response(400) if _api(request) else defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    return api_error_response(403) if _api(request) else defaults.permission_denied(request, exception)


def page_not_found(request, exception=None):
    return api_error_response(404) if _api(request) else defaults.page_not_found(request, exception)


def server_error(request):
    return api_error_response(500) if _api(request) else defaults.server_error(request)


# Django's pages: HTML, or plain text for a client that does not accept HTML (its debug 500 page,
# traceback and settings included). The API's own errors are JSON, whatever the client accepts.
_DJANGO_PAGE_TYPES = ("text/html", "text/plain")


class ApiErrorPagesMiddleware:
    """First in MIDDLEWARE, so it also sees the pages for errors raised inside other middleware
    (a refused Host is raised by CommonMiddleware)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and _api(request)
            and response.get("Content-Type", "").startswith(_DJANGO_PAGE_TYPES)
        ):
            return api_error_response(response.status_code)
        return response
