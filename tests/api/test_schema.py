import re
from datetime import timedelta

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests.factories import make_seller

SCHEMA_PAGES = ("/api/v1/schema/", "/api/v1/docs/", "/api/v1/redoc/")


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    out = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def test_schema_generates_without_warnings_and_validates(schema):
    charges = schema["paths"]["/api/v1/charges/"]["post"]
    assert {"202", "200", "400", "401", "403", "409", "413", "429"} <= set(charges["responses"])
    assert charges["responses"]["429"]["headers"]["Retry-After"]
    assert charges["responses"]["202"]["headers"]["Location"]
    amount = schema["components"]["schemas"]["ChargeCreateInputRequest"]["properties"]["amount"]
    assert amount["type"] == "integer" and amount["minimum"] == 1
    assert {"jwtAuth", "apiKeyAuth"} <= set(schema["components"]["securitySchemes"])
    assert "text/csv" in schema["paths"]["/api/v1/transactions/export/"]["get"]["responses"]["200"]["content"]


def test_a_charges_status_includes_reversed_with_its_reason(schema):
    charge = schema["components"]["schemas"]["ChargeOutput"]["properties"]
    statuses = schema["components"]["schemas"][charge["status"]["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert statuses == ["queued", "succeeded", "failed", "reversed"]
    assert charge["reversal_reason"]["nullable"] and charge["reversed_at"]["format"] == "date-time"
    settle = schema["paths"]["/api/v1/ops/conflicts/{charge_id}/settle/"]["post"]
    assert {"200", "202"} <= set(settle["responses"])


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def test_request_bodies_are_json_except_the_charge_list_upload(schema):
    media_types = {
        name: sorted(operation["requestBody"]["content"])
        for name, operation in _operations(schema)
        if "requestBody" in operation
    }
    assert media_types.pop("POST /api/v1/charge-batches/") == ["multipart/form-data"]
    assert len(media_types) >= 9
    assert all(types == ["application/json"] for types in media_types.values()), media_types


def _component(schema, ref: str) -> dict:
    return schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_requests_and_answers_have_components_of_their_own(schema):
    """A generated client demands what a component calls required: the login request must not
    need the tokens it answers with, nor the answer the password it was sent."""
    login = schema["paths"]["/api/v1/auth/token/"]["post"]
    request = _component(schema, login["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    answer = _component(schema, login["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    assert sorted(request["required"]) == ["password", "username"]
    assert sorted(answer["required"]) == ["access", "refresh"] and "username" not in answer["properties"]
    refresh = schema["paths"]["/api/v1/auth/token/refresh/"]["post"]
    request = _component(schema, refresh["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    answer = _component(schema, refresh["responses"]["200"]["content"]["application/json"]["schema"]["$ref"])
    assert request["required"] == ["refresh"] and "access" not in request["properties"]
    assert answer["required"] == ["access"]
    for name, component in schema["components"]["schemas"].items():
        properties = component.get("properties", {}).values()
        if name.endswith("Request"):
            assert not any(prop.get("readOnly") for prop in properties), name
        else:
            assert not any(prop.get("writeOnly") for prop in properties), name


@pytest.mark.django_db
def test_swagger_and_redoc_pages_render_from_the_server_alone(client):
    for page in ("/api/v1/docs/", "/api/v1/redoc/"):
        response = client.get(page)
        html = response.content.decode()
        assert response.status_code == 200 and "/api/v1/schema/" in html
        assert not re.search(r'https?://|(src|href)="//', html), f"{page} loads something from another host"
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any(asset.endswith(".js") for asset in assets), assets
        for asset in assets:
            assert asset.startswith("/static/drf_spectacular_sidecar/"), asset
            assert client.get(asset).status_code == 200, asset


def _expired_access(user) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(minutes=1))
    return str(token)


@pytest.mark.django_db
def test_schema_and_its_pages_ignore_credentials():
    user = make_seller().user
    for authorization in (
        f"Bearer {_expired_access(user)}",
        f"Bearer {RefreshToken.for_user(user)}",  # a refresh token where an access token goes
        "Bearer not-a-token",
        "Bearer",
        "Api-Key nope.nope",
    ):
        for page in SCHEMA_PAGES:
            response = Client().get(page, headers={"Authorization": authorization})
            assert response.status_code == 200, (page, authorization, response.content[:200])
