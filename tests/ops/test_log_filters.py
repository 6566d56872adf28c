"""workers/log_filters.py on Celery's own log calls: its INFO lines about a beat-scheduled task are
DEBUG (dropped at the console's INFO, shown once the logger is set to DEBUG), every other line
passes unchanged; and LOGGING installs the filter for every beat-scheduled task, with LOG_LEVELS
naming loggers' levels."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.app import trace
from django.conf import settings

from workers.log_filters import PeriodicTaskLines

ROOT = Path(__file__).resolve().parents[2]
PERIODIC = "ledger.reconcile_fulfilment"


class Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def celery_logger():
    """Celery's `celery.app.trace` logger with the filter of LOGGING and a handler that keeps what
    reaches it, at the console's level (INFO)."""
    logger = logging.getLogger("celery.app.trace")
    saved = logger.level, logger.propagate, logger.filters[:]
    lines, filt = Lines(), PeriodicTaskLines(tasks=[PERIODIC, "ledger.sweep_stale_sellers"])
    logger.filters = [filt]
    logger.addHandler(lines)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, lines
    logger.removeHandler(lines)
    logger.level, logger.propagate, logger.filters = saved[0], saved[1], saved[2]


def _success(name: str) -> None:
    # What a worker logs when a task succeeds (celery/app/trace.py: info(LOG_SUCCESS, ...)).
    trace.info(trace.LOG_SUCCESS, {"id": "abc", "name": name, "return_value": "None", "runtime": 0.002, "args": ""})


def test_a_periodic_tasks_info_lines_are_dropped_at_info(celery_logger):
    logger, lines = celery_logger
    _success(PERIODIC)
    trace.info(trace.LOG_RECEIVED, {"id": "abc", "name": "ledger.sweep_stale_sellers", "args": "", "kwargs": ""})
    assert lines.records == []


def test_other_tasks_and_worse_than_info_pass_unchanged(celery_logger):
    logger, lines = celery_logger
    _success("ledger.settle_shard")
    failure = {"id": "abc", "name": PERIODIC, "exc": "boom", "description": "raised unexpected"}
    logger.error(trace.LOG_FAILURE, failure, extra={"data": failure})  # as celery/app/trace.py does
    logger.info("a line about no task")
    assert [(r.levelname, r.getMessage()) for r in lines.records] == [
        ("INFO", "Task ledger.settle_shard[abc] succeeded in 0.002s: None"),
        ("ERROR", f"Task {PERIODIC}[abc] raised unexpected: boom"),
        ("INFO", "a line about no task"),
    ]


def test_at_debug_the_periodic_lines_come_back_as_debug(celery_logger):
    logger, lines = celery_logger
    logger.setLevel(logging.DEBUG)  # what LOG_LEVELS=celery.app.trace=DEBUG does
    _success(PERIODIC)
    assert [(r.levelname, r.getMessage()) for r in lines.records] == [
        ("DEBUG", f"Task {PERIODIC}[abc] succeeded in 0.002s: None"),
    ]


def test_beats_sending_due_task_line_is_the_periodic_tasks_too():
    filt = PeriodicTaskLines(tasks=[PERIODIC])
    # celery/beat.py: info('Scheduler: Sending due task %s (%s)', entry.name, entry.task)
    args = ("Scheduler: Sending due task %s (%s)", (PERIODIC, PERIODIC), None)
    sending = logging.LogRecord("celery.beat", logging.INFO, __file__, 1, *args)
    starting = logging.LogRecord("celery.beat", logging.INFO, __file__, 1, "beat: Starting...", (), None)
    assert filt.filter(sending) is False  # celery.beat at INFO here: dropped
    assert filt.filter(starting) is True  # what the tests and the bench wait for stays


def test_logging_filters_every_beat_scheduled_task_on_celerys_three_loggers():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"ledger.reconcile_fulfilment", "ledger.sweep_stale_sellers", "notifications.sweep"} <= tasks
    assert set(settings.LOGGING["filters"]["periodic_tasks"]["tasks"]) == tasks
    for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
        assert settings.LOGGING["loggers"][name]["filters"] == ["periodic_tasks"]
        assert "level" not in settings.LOGGING["loggers"][name]  # failures and real work keep theirs


def _loggers_with(log_levels: str) -> subprocess.CompletedProcess:
    code = "import json, config.settings.test as s; print(json.dumps(s.LOGGING['loggers']))"
    env = {**os.environ, "LOG_LEVELS": log_levels, "SECRET_KEY": "x" * 50}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_log_levels_sets_named_loggers_and_refuses_nonsense():
    shown = _loggers_with("celery.app.trace=debug, ledger.posting=WARNING")
    assert shown.returncode == 0, shown.stderr
    loggers = json.loads(shown.stdout)
    assert loggers["celery.app.trace"] == {"filters": ["periodic_tasks"], "level": "DEBUG"}
    assert loggers["ledger.posting"] == {"level": "WARNING"}
    refused = _loggers_with("celery.app.trace")
    assert refused.returncode != 0 and "LOG_LEVELS" in refused.stderr
