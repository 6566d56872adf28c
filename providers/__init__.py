"""Top-up providers: the interface (base.py) and its adapters. `get_provider()` is the configured one."""

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from providers.base import Provider
from providers.dtone import DTOneProvider
from providers.dvs import DVSProvider
from providers.reloadly import ReloadlyProvider

KINDS = ("sandbox", "dvs", "reloadly")


@cache
def get_provider() -> Provider:
    """The provider the settings name (PROVIDER_KIND), built once per process (its sessions are
    per thread, its caches and tokens shared by the threads)."""
    kind = getattr(settings, "PROVIDER_KIND", "sandbox")
    url = getattr(settings, "PROVIDER_URL", "http://127.0.0.1:8090")
    key = getattr(settings, "PROVIDER_API_KEY", "")
    secret = getattr(settings, "PROVIDER_API_SECRET", "")
    callback_secret = getattr(settings, "PROVIDER_CALLBACK_SECRET", "") or None
    timeout = (
        float(getattr(settings, "PROVIDER_CONNECT_TIMEOUT", 1.0)),
        float(getattr(settings, "PROVIDER_READ_TIMEOUT", 5.0)),
    )
    if kind == "sandbox":
        return DTOneProvider(base_url=url, api_key=key or None, callback_secret=callback_secret, timeout=timeout)
    if kind in ("dvs", "reloadly") and not (key and secret):
        raise ImproperlyConfigured(f"PROVIDER_KIND={kind} needs PROVIDER_API_KEY and PROVIDER_API_SECRET")
    if kind == "dvs":
        return DVSProvider(
            base_url=url,
            key=key,
            secret=secret,
            callback_secret=callback_secret,
            currency=getattr(settings, "PLATFORM_CURRENCY", None),
            timeout=timeout,
        )
    if kind == "reloadly":
        return ReloadlyProvider(
            base_url=url,
            auth_url=getattr(settings, "PROVIDER_AUTH_URL", "https://auth.reloadly.com/oauth/token"),
            client_id=key,
            client_secret=secret,
            audience=getattr(settings, "PROVIDER_AUDIENCE", "") or None,
            timeout=timeout,
        )
    raise ImproperlyConfigured(f"PROVIDER_KIND must be one of {', '.join(KINDS)}, not {kind!r}")
