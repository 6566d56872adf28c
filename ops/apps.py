from django.apps import AppConfig


class OpsConfig(AppConfig):
    """What the on-call engineer reads: queue depths and stalls (`ops/queues/`), Prometheus metrics
    (`ops/metrics/`) and Flower behind authentication (`manage.py runflower`)."""

    name = "ops"
