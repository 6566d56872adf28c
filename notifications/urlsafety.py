"""Which webhook URLs the service may call: never, unless allowed, one that resolves to a
loopback, private, link-local or otherwise non-public address (an endpoint must not be a way
into the service's own network)."""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


def url_problem(url: str) -> str | None:
    """Why the service will not call `url`, or None. Resolves the host (every address counts)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "The URL must be http:// or https:// with a host."
    if settings.WEBHOOK_ALLOW_PRIVATE_URLS:
        return None
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return f"The host {parts.hostname!r} does not resolve."
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            return f"The host {parts.hostname!r} resolves to a non-public address ({address})."
    return None
