"""Where the heavy reads run: the streaming replica while it keeps up, else the primary.

The heavy reads are the lists (charges, deposits, charge batches, ledger entries) and the CSV export
of the entries: the reads whose cost grows with a seller's history (`core/api/reads.py` puts the
views there). Everything else reads the primary: a seller's own charge, deposit or batch by id (a
client polling what it just wrote always sees it: read-your-writes), and everything the services,
the posting code, the workers and the admin site read (no decision is taken on a stale copy).

Explicit, not routed: a router's `db_for_read` would send every read of a model to the replica,
among them the service that reads back the charge it just recorded and the poll of that charge, and
getting those right would mean listing every exception. Here the reads allowed to lag are the ones
listed; `core/db/router.py` only keeps writes and migrations on the primary.

The lag is measured on the replica: 0 when it has replayed all the WAL it received (an idle primary
sends none, so `now() - pg_last_xact_replay_timestamp()` alone would grow without any real lag),
else the age of the last transaction it replayed (pessimistic after a quiet spell: then the reads
go to the primary for a moment); unknown when it does not stream (no WAL receiver: it cannot know
what it misses) or does not answer. One measurement serves a process for `LAG_TTL`, or
`FAILED_TTL` after a failure, so a replica that is down costs one connection attempt per process
every few seconds, not one per request. A read the replica fails (it went down within that
second, or a recovery conflict cancelled the query) runs again on the primary: the replica never
turns a read into an error answer."""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connections

logger = logging.getLogger(__name__)

PRIMARY = "default"
REPLICA = "replica"
LAG_TTL = 1.0  # seconds one measurement serves a process
FAILED_TTL = 5.0  # after the replica did not answer

# Errors after which a read is worth running again on the primary: the replica's connection, or a
# query it cancelled (a recovery conflict is SQLSTATE 40001, an OperationalError).
REPLICA_ERRORS = (OperationalError, InterfaceError)

_LAG_SQL = """
SELECT CASE
         WHEN NOT pg_is_in_recovery() THEN 0.0
         WHEN NOT EXISTS (SELECT FROM pg_stat_wal_receiver) THEN NULL
         WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0
         ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())  -- NULL: none replayed yet
       END
"""

T = TypeVar("T")


@dataclass(frozen=True)
class ReplicaLag:
    seconds: float | None  # behind the primary; None: unknown
    error: str | None  # why it is unknown
    measured_at: float  # time.monotonic()
    answered: bool = True


_last: ReplicaLag | None = None
_serving: bool | None = None  # the process's last decision, so that only changes are logged


def configured() -> bool:
    return REPLICA in settings.DATABASES


def measure() -> ReplicaLag:
    """Ask the replica now (ops/queues and the metrics; the reads use `current_lag`)."""
    global _last
    try:
        with connections[REPLICA].cursor() as cursor:
            cursor.execute(_LAG_SQL)
            (lag,) = cursor.fetchone()
    except DatabaseError as exc:
        return replica_failed(exc)
    if lag is None:
        _last = ReplicaLag(None, "not streaming from the primary", time.monotonic())
    else:
        # Clocks of two hosts: a replica whose clock is behind the primary's would see a negative age.
        _last = ReplicaLag(max(float(lag), 0.0), None, time.monotonic())
    return _last


def replica_failed(exc: Exception) -> ReplicaLag:
    """Note that the replica did not answer: the reads use the primary for `FAILED_TTL`."""
    global _last
    connections[REPLICA].close()  # a broken connection would fail the next measurement too
    first_line = (str(exc).strip().splitlines() or [""])[0]
    _last = ReplicaLag(None, f"{type(exc).__name__}: {first_line}", time.monotonic(), answered=False)
    return _last


def current_lag() -> ReplicaLag:
    state = _last
    if state is None or time.monotonic() - state.measured_at >= (LAG_TTL if state.answered else FAILED_TTL):
        state = measure()
    return state


def forget() -> None:
    """Drop this process's measurement: the next read measures again (tests)."""
    global _last
    _last = None


def heavy_read_alias() -> str:
    """The database alias for a heavy read: the replica if one is configured and known to be at
    most DATABASE_REPLICA_MAX_LAG seconds behind, else the primary."""
    if not configured():
        return PRIMARY
    state = current_lag()
    limit = settings.DATABASE_REPLICA_MAX_LAG
    serving = state.seconds is not None and state.seconds <= limit
    _log_change(serving, state, limit)
    return REPLICA if serving else PRIMARY


def _log_change(serving: bool, state: ReplicaLag, limit: float) -> None:
    global _serving
    if serving == _serving:
        return
    _serving = serving
    if serving:
        logger.info("heavy reads on the replica (lag %.1f s)", state.seconds)
    elif state.seconds is not None:
        logger.warning(
            "heavy reads on the primary: the replica lags %.1f s (DATABASE_REPLICA_MAX_LAG %.1f s)",
            state.seconds,
            limit,
        )
    else:
        logger.warning("heavy reads on the primary: the replica is unusable (%s)", state.error)


def read_heavy(run: Callable[[str], T]) -> T:
    """`run(alias)` on the heavy-read database; on the primary again if the replica fails it."""
    alias = heavy_read_alias()
    if alias == PRIMARY:
        return run(PRIMARY)
    try:
        return run(alias)
    except REPLICA_ERRORS as exc:
        _log_change(False, replica_failed(exc), settings.DATABASE_REPLICA_MAX_LAG)
        return run(PRIMARY)


def stream_heavy(rows: Callable[[str], Iterator[T]]) -> Iterator[T]:
    """The rows of `rows(alias)` from the heavy-read database. If the replica fails before the
    first row, all of them come from the primary; after it, the error is raised (what was sent
    cannot be taken back), as it would be on the primary."""
    alias = heavy_read_alias()
    started = False
    try:
        for row in rows(alias):
            started = True
            yield row
    except REPLICA_ERRORS as exc:
        if started or alias == PRIMARY:
            raise
        _log_change(False, replica_failed(exc), settings.DATABASE_REPLICA_MAX_LAG)
        yield from rows(PRIMARY)


def replica_report() -> dict | None:
    """The replica as ops/queues and the metrics show it; None when none is configured."""
    if not configured():
        return None
    state = measure()
    return {
        "lag_seconds": None if state.seconds is None else round(state.seconds, 3),
        "max_lag_seconds": settings.DATABASE_REPLICA_MAX_LAG,
        "heavy_reads": "replica" if heavy_read_alias() == REPLICA else "primary",
        "error": state.error,
    }
