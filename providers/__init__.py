"""Top-up providers: the interface (base.py) and its adapters. `get_provider()` is the configured one."""

from functools import cache

from django.conf import settings

from providers.base import Provider
from providers.dtone import DTOneProvider


@cache
def get_provider() -> Provider:
    """The provider the settings name, built once per process (its sessions are per thread)."""
    return DTOneProvider(
        base_url=getattr(settings, "PROVIDER_URL", "http://127.0.0.1:8090"),
        api_key=getattr(settings, "PROVIDER_API_KEY", "") or None,
        callback_secret=getattr(settings, "PROVIDER_CALLBACK_SECRET", "") or None,
        timeout=(
            float(getattr(settings, "PROVIDER_CONNECT_TIMEOUT", 1.0)),
            float(getattr(settings, "PROVIDER_READ_TIMEOUT", 5.0)),
        ),
    )
