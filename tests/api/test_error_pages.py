"""Under /api/ every error Django answers itself is the contract's JSON error shape, whether
DEBUG is on or off: an unknown URL, a refused Host header, an uncaught exception. Django's
debug pages (which show settings such as DATABASE_URL) never appear there."""

import pytest
from django.test import Client, override_settings

from tests.api.helpers import assert_error


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def _json(response):
    assert response["Content-Type"] == "application/json", (response.status_code, response.content[:300])
    return response


def test_unknown_api_url_is_a_json_404(db, debug):
    assert_error(_json(Client().get("/api/v1/no-such-thing/")), 404, "not_found")


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_refused_host_is_a_json_400(db, debug, accept):
    response = Client().get("/api/v1/health/", HTTP_HOST="evil.example", HTTP_ACCEPT=accept)
    assert_error(_json(response), 400, "bad_request")


@override_settings(ROOT_URLCONF="tests.api.urls_failing")
@pytest.mark.parametrize("accept", ["text/html", "application/json", "*/*"])
def test_uncaught_exception_is_a_json_500_without_settings(db, debug, accept):
    # With DEBUG on, Django's page is HTML for clients that accept it and plain text otherwise.
    response = Client(raise_request_exception=False).get("/api/v1/test-failure/", HTTP_ACCEPT=accept)
    assert_error(_json(response), 500, "server_error")
    assert b"DATABASE_URL" not in response.content and b"a bug" not in response.content


def test_admin_keeps_html_pages(db, debug):
    response = Client().get("/admin/no-such-page/")
    assert response.status_code in (302, 404) and "json" not in response.get("Content-Type", "")
