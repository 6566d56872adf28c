"""The catalog's tasks run on queues the stack's workers consume, and beat schedules the sync."""

from django.conf import settings

from catalog.tasks import LOOKUP_QUEUE, SYNC_QUEUE, lookup_number_task, sync_task
from celery_app import app
from workers.assignment import worker_groups
from workers.commands import fulfil_worker_argv, import_worker_argv, worker_argv


def _consumed_queues() -> set[str]:
    argvs = [import_worker_argv(), fulfil_worker_argv()]
    argvs += [worker_argv(group, name=f"w{n}", with_default_queue=n == 0) for n, group in enumerate(worker_groups())]
    queues: set[str] = set()
    for argv in argvs:
        queues.update(argv[argv.index("-Q") + 1].split(","))
    return queues


def test_catalog_tasks_have_stable_names_and_consumed_queues():
    assert sync_task.name == "catalog.sync" and lookup_number_task.name == "catalog.lookup_number"
    assert {SYNC_QUEUE, LOOKUP_QUEUE} <= _consumed_queues()
    # Sent any way (beat, .delay(), Flower), each lands on its queue: the router keeps an explicit one.
    router = app.amqp.router
    for task, queue in ((sync_task, SYNC_QUEUE), (lookup_number_task, LOOKUP_QUEUE)):
        assert task.queue == queue
        assert router.route({"queue": task.queue}, task.name)["queue"].name == queue


def test_beat_syncs_the_catalog_on_a_consumed_queue_every_interval():
    entry = settings.CELERY_BEAT_SCHEDULE["catalog.sync"]
    assert entry["task"] == "catalog.sync" and entry["schedule"] == settings.CATALOG_SYNC_INTERVAL
    assert entry["options"]["queue"] == SYNC_QUEUE


# Called, not `.apply()`ed: apply() fires task_prerun, whose handler (workers/tasks.py) closes a
# connection that is not in autocommit, which inside a test's transaction is the test's own.


def test_the_lookup_task_records_the_providers_answer(synced):
    from catalog.models import NumberLookup

    lookup_number_task("+254712345678")  # the task body, as a worker runs it (no signals: see below)
    assert NumberLookup.objects.get(msisdn="+254712345678").operator.name == "Safaricom"


def test_the_sync_task_answers_its_summary(synced):
    summary = sync_task()
    assert summary["products_unchanged"] == summary["products_seen"] > 100
