from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"

    def ready(self) -> None:
        # Every process that runs Django (gunicorn, tests, management commands) must publish through
        # the configured app: without this import shared_task falls back to Celery's default app,
        # whose broker is amqp://localhost, and wake-ups never reach Redis (only the sweeper's do).
        import celery_app

        # Shard workers settle their shards' waiting sellers whenever they (re)connect to the broker.
        from workers import recovery

        recovery.install(celery_app.app)

        # Connects the worker_ready/worker_shutdown receivers that announce consumed queues, and
        # registers the system check of the shard assignment.
        from workers import checks, heartbeat  # noqa: F401
