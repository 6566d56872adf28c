"""Several providers by name (`PROVIDERS`), the one-provider settings as the default configuration,
the admin's check of a route, and callbacks naming their provider."""

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from catalog.models import Product, ProductRoute, ProductVersion
from config.settings.base import _providers
from devstack.house_catalog import PROVIDER as HOUSE
from ledger.fulfilment.service import callback_url_for
from providers import default_provider_name, get_provider, provider_names
from providers.dtone import DTOneProvider
from providers.dvs import DVSProvider
from providers.reloadly import ReloadlyProvider

SEVERAL = {
    "dtone": {"kind": "dvs", "url": "https://preprod-dvs-api.dtone.com/v1", "key": "k", "secret": "s"},
    "reloadly": {"kind": "reloadly", "url": "https://topups-sandbox.reloadly.com", "key": "id", "secret": "s"},
}


@pytest.fixture
def fresh_providers():
    get_provider.cache_clear()
    yield
    get_provider.cache_clear()


def test_without_providers_the_single_settings_are_the_one_default_provider(settings, fresh_providers):
    settings.PROVIDERS = None
    assert provider_names() == ["sandbox"] and default_provider_name() == "sandbox"
    assert isinstance(get_provider(), DTOneProvider) and get_provider().name == "sandbox"
    assert get_provider("sandbox") is get_provider()  # built once per process and name


def test_several_providers_by_name_each_built_once_the_first_the_default(settings, fresh_providers):
    settings.PROVIDERS = SEVERAL
    settings.PROVIDER_DEFAULT = ""
    assert provider_names() == ["dtone", "reloadly"] and default_provider_name() == "dtone"
    dtone, reloadly = get_provider("dtone"), get_provider("reloadly")
    assert isinstance(dtone, DVSProvider) and dtone.name == "dtone"
    assert isinstance(reloadly, ReloadlyProvider) and reloadly.name == "reloadly"
    assert reloadly.tokens.auth_url == "https://auth.reloadly.com/oauth/token"  # the default
    assert get_provider() is dtone and get_provider("reloadly") is reloadly

    settings.PROVIDER_DEFAULT = "reloadly"
    assert default_provider_name() == "reloadly"


@pytest.mark.parametrize(
    ("providers", "default"),
    [
        ({"x": {"kind": "dvs"}}, ""),  # no url
        ({"x": {"kind": "dvs", "url": "https://x", "key": "k", "secret": "s", "colour": "red"}}, ""),
        ({"x": {"kind": "dvs", "url": "https://x"}}, ""),  # no credentials
        ({"x": {"kind": "else", "url": "https://x"}}, ""),
        (SEVERAL, "nobody"),
    ],
)
def test_a_provider_configured_wrongly_refuses_to_start(settings, fresh_providers, providers, default):
    settings.PROVIDERS, settings.PROVIDER_DEFAULT = providers, default
    with pytest.raises(ImproperlyConfigured):
        get_provider()


def test_an_unknown_provider_name_is_refused(settings, fresh_providers):
    settings.PROVIDERS = SEVERAL
    with pytest.raises(ImproperlyConfigured, match="no provider named"):
        get_provider("nobody")


def test_the_providers_variable_is_a_json_object_of_objects():
    assert _providers("") is None
    assert _providers('{"a": {"kind": "sandbox", "url": "http://x"}}') == {"a": {"kind": "sandbox", "url": "http://x"}}
    for wrong in ("[1]", '{"a": 1}', "{nope"):
        with pytest.raises(ImproperlyConfigured):
            _providers(wrong)


def test_the_callback_url_names_the_provider_only_when_there_are_several(settings, fresh_providers):
    settings.PROVIDER_CALLBACK_URL = "https://ledger.example/api/v1/provider/callbacks/"
    settings.PROVIDERS = None
    assert callback_url_for("sandbox") == settings.PROVIDER_CALLBACK_URL
    settings.PROVIDERS = SEVERAL
    assert callback_url_for("reloadly") == f"{settings.PROVIDER_CALLBACK_URL}?provider=reloadly"
    settings.PROVIDER_CALLBACK_URL = ""
    assert callback_url_for("reloadly") is None


@pytest.mark.django_db
def test_a_callback_naming_a_provider_not_configured_is_refused(client, settings, fresh_providers):
    settings.PROVIDERS = SEVERAL
    response = client.post("/api/v1/provider/callbacks/?provider=nobody", data="{}", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_callback")


def _copy_of(sold: Product, provider: str, **terms) -> Product:
    served = Product.objects.create(
        provider=provider, provider_product_id=sold.provider_product_id, operator=sold.operator, name=sold.name
    )
    fields = {f.name: getattr(sold.current_version, f.name) for f in ProductVersion._meta.fields}
    fields = {k: v for k, v in fields.items() if k not in ("id", "product")} | terms
    served.current_version = ProductVersion.objects.create(product=served, **fields)
    served.save(update_fields=["current_version"])
    return served


@pytest.mark.django_db
def test_a_route_must_name_a_configured_provider_delivering_the_same(settings, fresh_providers):
    settings.PROVIDERS = None  # one provider: `sandbox`
    sold = Product.objects.filter(provider=HOUSE).select_related("current_version").first()
    ProductRoute(product=sold, served_by=_copy_of(sold, "sandbox"), priority=0).full_clean()

    with pytest.raises(ValidationError, match="not configured"):
        ProductRoute(product=sold, served_by=_copy_of(sold, "elsewhere"), priority=1).full_clean()
    other_currency = _copy_of(sold, "sandbox-2", destination_currency="EUR")
    settings.PROVIDERS = {"sandbox-2": {"kind": "sandbox", "url": "http://127.0.0.1:1"}}
    with pytest.raises(ValidationError, match="another currency"):
        ProductRoute(product=sold, served_by=other_currency, priority=1).full_clean()
