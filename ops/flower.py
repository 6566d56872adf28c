"""`python -m ops.flower -A celery_app flower ...`: Flower (what `celery ... flower`
runs), with its Prometheus `/metrics` behind the same authentication as its pages.

Flower 2.2 checks credentials in each page's handler, and its `/metrics` handler has no such
check: anyone reaching the port read every task name and worker host. Flower has no option for
it, so its routing table gets the same handler with the check (`tornado.web.authenticated`, as
its other pages use) before the Flower application is built from that table. `/healthcheck`
("OK", nothing more) stays open for probes. `manage.py runflower` is what starts this."""

import sys

from flower import urls
from flower.views.monitor import Metrics
from tornado import web


class AuthenticatedMetrics(Metrics):
    @web.authenticated
    async def get(self):
        await super().get()


def protect_metrics(handlers: list) -> None:
    """Swap Flower's /metrics handler for the authenticated one, in place (Flower's application
    reads this list when it is built)."""
    for index, entry in enumerate(handlers):
        if isinstance(entry, tuple) and entry[1] is Metrics:  # the others are (pattern, handler) or URLSpec
            handlers[index] = (entry[0], AuthenticatedMetrics, *entry[2:])
            return
    raise RuntimeError("Flower has no /metrics handler to protect: check ops/flower.py against its version")


def flower_credentials_problem(value: str | None) -> str | None:
    """Why `FLOWER_BASIC_AUTH` (`user:password[,user:password...]`) is unusable, or None."""
    if not value:
        return "FLOWER_BASIC_AUTH is not set"
    for pair in value.split(","):
        user, sep, password = pair.partition(":")
        if not sep or not user.strip() or not password:
            return "FLOWER_BASIC_AUTH must be user:password[,user:password...]"
        if len(password) < 12:
            return f"the Flower password of {user!r} is shorter than 12 characters"
    return None


def main() -> None:
    protect_metrics(urls.handlers)
    from celery.bin.celery import main as celery_main

    sys.exit(celery_main())


if __name__ == "__main__":
    main()
