"""`manage.py check` (and every management command) refuses a shard assignment that would leave a
shard unconsumed or consumed twice, before any process starts with it."""

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from workers.assignment import worker_groups


@register("ledger")
def check_shard_assignment(app_configs=None, **kwargs) -> list[Error]:
    try:
        worker_groups()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="See docs/operations.md, 'Shards and worker processes'.", id="ledger.E001")]
    return []
