"""Logging filters of the Celery processes, installed by `LOGGING` (config/settings/base.py).

Beat sends each periodic task every few seconds (the reconciler every 2 s), and for each run
Celery logs three INFO lines: beat's "Scheduler: Sending due task", the worker's "Task ...
received" and "Task ... succeeded in ...". An idle stack printed about two lines a second, and a
person trying the API could not find their own requests on `make up`'s console. Those loggers
(`celery.beat`, `celery.worker.strategy`, `celery.app.trace`) are Celery's own, one per module
and not per task, and they also carry the lines of the work that matters (a charge's settle, an
import) and of failures, so they keep their level; only their INFO lines about the beat-scheduled
tasks are counted as DEBUG. What a periodic task did, when it did something, its own code logs
(workers/tasks.py, ledger/fulfilment/reconcile.py, notifications/tasks.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

SENDING_DUE_TASK = "Scheduler: Sending due task"  # celery.beat: (entry name, task name) as args


class PeriodicTaskLines(logging.Filter):
    """Celery's INFO lines about the tasks named in `tasks`, logged as DEBUG: shown only where the
    logger that made them is enabled for DEBUG (`LOG_LEVELS=celery.app.trace=DEBUG`, say), dropped
    otherwise. Every other line, and every line above INFO (a failure, a rejection), passes as it is."""

    def __init__(self, tasks: Iterable[str] = ()):
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or task_name(record) not in self.tasks:
            return True
        if not logging.getLogger(record.name).isEnabledFor(logging.DEBUG):
            return False
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


def task_name(record: logging.LogRecord) -> str | None:
    """The task a Celery log record is about: the worker's lines carry it in `data` (Celery's
    `extra`), beat's "Sending due task" as its second argument."""
    data = getattr(record, "data", None)
    if isinstance(data, dict):
        return data.get("name")
    if isinstance(record.msg, str) and record.msg.startswith(SENDING_DUE_TASK):
        args = record.args if isinstance(record.args, tuple) else ()
        return args[1] if len(args) >= 2 and isinstance(args[1], str) else None
    return None
