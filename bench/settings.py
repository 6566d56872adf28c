"""The production settings, unchanged, plus one thing a benchmark needs on a shared machine: an
optional prefix on every broker key (`BENCH_REDIS_KEY_PREFIX`), so the benchmark's wake-ups can
never be consumed by another stack's workers that listen on the same Redis database and the same
queue names (the smoke test runs beside the test suite's own workers)."""

from config.settings.production import *  # noqa: F401,F403
from config.settings.production import CELERY_BROKER_TRANSPORT_OPTIONS, env

_prefix = env("BENCH_REDIS_KEY_PREFIX", "")
if _prefix:
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": _prefix}
