"""pytest-celery: a Redis broker and a Celery worker in containers answer a task round trip.
Runs only where a Docker engine answers (see conftest.py)."""

from pytest_celery import RESULT_TIMEOUT, CeleryTestSetup, ping


def test_containerized_worker_answers_ping(celery_setup: CeleryTestSetup):
    assert celery_setup.ready(ping=True)
    assert ping.s().apply_async(queue=celery_setup.worker.worker_queue).get(timeout=RESULT_TIMEOUT) == "pong"
