"""Top-up providers: the interface (base.py) and its adapters.

Several providers may be configured at once, each by a name (`PROVIDERS`); without it the single
provider of `PROVIDER_KIND`, `PROVIDER_URL`, ... is the one configuration, named as its adapter
names itself (`sandbox`, `dvs` or `reloadly`). `get_provider(name)` is a configured provider,
built once per process and name; `get_provider()` the default one (`PROVIDER_DEFAULT`, else the
first configured)."""

from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from providers.base import Provider
from providers.dtone import DTOneProvider
from providers.dvs import DVSProvider
from providers.reloadly import ReloadlyProvider

KINDS = ("sandbox", "dvs", "reloadly")
RELOADLY_AUTH_URL = "https://auth.reloadly.com/oauth/token"


@dataclass(frozen=True)
class ProviderConfig:
    """One configured provider: what its adapter is built from."""

    name: str
    kind: str
    url: str
    key: str = ""
    secret: str = ""
    callback_secret: str = ""
    auth_url: str = RELOADLY_AUTH_URL
    audience: str = ""
    currency: str | None = None


def _single() -> ProviderConfig:
    """The one provider of the PROVIDER_* settings (the configuration before `PROVIDERS`)."""
    kind = getattr(settings, "PROVIDER_KIND", "sandbox")
    return ProviderConfig(
        name=kind,
        kind=kind,
        url=getattr(settings, "PROVIDER_URL", "http://127.0.0.1:8090"),
        key=getattr(settings, "PROVIDER_API_KEY", ""),
        secret=getattr(settings, "PROVIDER_API_SECRET", ""),
        callback_secret=getattr(settings, "PROVIDER_CALLBACK_SECRET", ""),
        auth_url=getattr(settings, "PROVIDER_AUTH_URL", RELOADLY_AUTH_URL),
        audience=getattr(settings, "PROVIDER_AUDIENCE", ""),
        currency=getattr(settings, "PLATFORM_CURRENCY", None),
    )


def provider_configs() -> dict[str, ProviderConfig]:
    """Every configured provider by name, in the order configured. `PROVIDERS` maps a name to
    `{kind, url, key, secret, callback_secret, auth_url, audience}` (kind and url required)."""
    configured = getattr(settings, "PROVIDERS", None)
    if not configured:
        single = _single()
        return {single.name: single}
    configs = {}
    for name, options in configured.items():
        unknown = set(options) - {"kind", "url", "key", "secret", "callback_secret", "auth_url", "audience"}
        if unknown or not {"kind", "url"} <= set(options):
            raise ImproperlyConfigured(f"PROVIDERS[{name!r}] needs kind and url, and knows no {sorted(unknown)}")
        configs[name] = ProviderConfig(
            name=name,
            kind=options["kind"],
            url=options["url"],
            key=options.get("key") or "",
            secret=options.get("secret") or "",
            callback_secret=options.get("callback_secret") or "",
            auth_url=options.get("auth_url") or RELOADLY_AUTH_URL,
            audience=options.get("audience") or "",
            currency=getattr(settings, "PLATFORM_CURRENCY", None),
        )
    return configs


def provider_names() -> list[str]:
    return list(provider_configs())


def default_provider_name() -> str:
    """The provider of a product no route names and of charges sent before routing."""
    names = provider_names()
    chosen = getattr(settings, "PROVIDER_DEFAULT", "") or names[0]
    if chosen not in names:
        raise ImproperlyConfigured(f"PROVIDER_DEFAULT={chosen!r} is not one of PROVIDERS ({', '.join(names)})")
    return chosen


def get_provider(name: str | None = None) -> Provider:
    """A configured provider by name (None: the default), built once per process and name (its
    connection pool, caches and tokens shared by the threads). An unknown name is
    ImproperlyConfigured: a charge routed to a provider since removed waits, held, until it is
    configured again."""
    return _built(name or default_provider_name())


@cache
def _built(name: str) -> Provider:
    configs = provider_configs()
    if name not in configs:
        raise ImproperlyConfigured(f"no provider named {name!r} is configured ({', '.join(configs)})")
    return build(configs[name])


# Tests (and the benchmark) that change the provider settings forget the adapters built so far.
get_provider.cache_clear = _built.cache_clear  # type: ignore[attr-defined]


def build(config: ProviderConfig) -> Provider:
    timeout = (
        float(getattr(settings, "PROVIDER_CONNECT_TIMEOUT", 1.0)),
        float(getattr(settings, "PROVIDER_READ_TIMEOUT", 5.0)),
    )
    kind, name, callback_secret = config.kind, config.name, config.callback_secret or None
    if kind == "sandbox":
        return DTOneProvider(
            base_url=config.url, api_key=config.key or None, callback_secret=callback_secret, timeout=timeout, name=name
        )
    if kind in ("dvs", "reloadly") and not (config.key and config.secret):
        raise ImproperlyConfigured(f"provider {name!r} of kind {kind} needs a key and a secret")
    if kind == "dvs":
        return DVSProvider(
            base_url=config.url,
            key=config.key,
            secret=config.secret,
            callback_secret=callback_secret,
            currency=config.currency,
            timeout=timeout,
            name=name,
        )
    if kind == "reloadly":
        return ReloadlyProvider(
            base_url=config.url,
            auth_url=config.auth_url,
            client_id=config.key,
            client_secret=config.secret,
            audience=config.audience or None,
            timeout=timeout,
            name=name,
        )
    raise ImproperlyConfigured(f"a provider's kind must be one of {', '.join(KINDS)}, not {kind!r}")
