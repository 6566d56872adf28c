import pytest
import yaml
from django.core.management import call_command


def test_schema_generates_without_warnings_and_validates(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    charges = schema["paths"]["/api/v1/charges/"]["post"]
    assert {"202", "200", "400", "401", "403", "409", "413", "429"} <= set(charges["responses"])
    assert charges["responses"]["429"]["headers"]["Retry-After"]
    assert charges["responses"]["202"]["headers"]["Location"]
    amount = schema["components"]["schemas"]["ChargeCreateInput"]["properties"]["amount"]
    assert amount["type"] == "integer" and amount["minimum"] == 1
    assert {"jwtAuth", "apiKeyAuth"} <= set(schema["components"]["securitySchemes"])
    assert "text/csv" in schema["paths"]["/api/v1/transactions/export/"]["get"]["responses"]["200"]["content"]


@pytest.mark.django_db
def test_swagger_and_redoc_pages_render(client):
    for page in ("/api/v1/docs/", "/api/v1/redoc/"):
        response = client.get(page)
        assert response.status_code == 200 and b"/api/v1/schema/" in response.content
