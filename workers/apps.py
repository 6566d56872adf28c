from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"

    def ready(self) -> None:
        # Connects the worker_ready/worker_shutdown receivers that announce consumed queues.
        from workers import ops_heartbeat  # noqa: F401
