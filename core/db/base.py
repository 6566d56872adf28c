"""PostgreSQL (psycopg2), with Django's per-request connection health check made cheap, and a
record of whether the current request may have written anything.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request on a
reused connection. On the charge POST that is a third of the request's database round trips, to
learn what the previous request learned milliseconds earlier. A connection whose last request used
it without a connection-level error less than `RECENT` seconds ago is not checked again, unless
its socket has something to say: a healthy idle connection receives nothing, while a backend
terminated by an administrator or a failover, or a server shutting down, sends its last message and
closes, which makes the socket readable. One zero-timeout `poll()` (no round trip) tells the two
apart, and only a connection with news pays the real check. A connection idle for longer than
`RECENT` (the case the check exists for: a proxy that dropped it silently) is always checked.

`may_have_written` says whether, since the request began, a statement that can write was sent to a
live-looking backend in autocommit mode, or a transaction that wrote was (or was being) committed. A connection-level error
in a request that has not written is safe to answer with 503 and `Retry-After` (core/errors.py):
nothing was recorded. After a write, whether it committed is unknown, and no such promise is made."""

import select
import time

from django.db.backends.postgresql import base
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

RECENT = 1.0  # seconds

# Statements that never record anything. Anything else (INSERT, UPDATE, DELETE, a WITH that may
# modify, EXECUTE of a prepared statement, COPY ...) counts as a possible write.
_READ_ONLY = ("SELECT", "SHOW", "SET ", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "PREPARE", "DEALLOCATE")


def _may_write(sql) -> bool:
    text = sql if isinstance(sql, str) else str(sql)
    return not text.lstrip()[:10].upper().startswith(_READ_ONLY)


class _WriteTracking:
    def execute(self, sql, params=None):
        self.db.note_statement(sql)
        return super().execute(sql, params)

    def executemany(self, sql, param_list):
        self.db.note_statement(sql)
        return super().executemany(sql, param_list)


class TrackingCursorWrapper(_WriteTracking, CursorWrapper):
    pass


class TrackingCursorDebugWrapper(_WriteTracking, CursorDebugWrapper):
    pass


class DatabaseWrapper(base.DatabaseWrapper):
    _answered_at = float("-inf")  # monotonic time at which the connection last proved usable
    _used = False  # a cursor was created since the last request boundary
    _uncommitted_write = False  # the open transaction sent a statement that may write
    may_have_written = False

    def make_cursor(self, cursor):
        return TrackingCursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor):
        return TrackingCursorDebugWrapper(cursor, self)

    def note_statement(self, sql) -> None:
        # A socket with news before the statement is sent belongs to a backend that is gone (its
        # termination is waiting to be read): the statement will fail without having run, so it
        # does not count. One poll() per write, no round trip.
        if _may_write(sql) and not self._socket_has_news():
            if self.get_autocommit():
                self.may_have_written = True
            else:
                self._uncommitted_write = True

    def commit(self):
        # Counted before the COMMIT is sent: one that fails may still have happened. Unless the
        # backend is gone already (its socket has news): then the transaction died with it.
        if self._uncommitted_write and not self._socket_has_news():
            self.may_have_written = True
        self._uncommitted_write = False
        super().commit()

    def rollback(self):
        self._uncommitted_write = False  # rolled back, or lost with the connection: never committed
        super().rollback()

    def create_cursor(self, name=None):
        self._used = True
        return super().create_cursor(name)

    def close_if_unusable_or_obsolete(self):
        # Runs at every request's start and end: a connection used since the last boundary and
        # still open without errors after Django's own checks has just answered.
        used, self._used = self._used, False
        self.may_have_written = False
        super().close_if_unusable_or_obsolete()
        if used and self.connection is not None and not self.errors_occurred:
            self._answered_at = time.monotonic()

    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self._answered_at < RECENT
            and not self._socket_has_news()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _socket_has_news(self) -> bool:
        """True if the server sent something to an idle connection (its termination) or the
        socket is closed or broken."""
        try:
            fd = self.connection.fileno()
        except Exception:  # psycopg2 raises InterfaceError on a closed connection: let the check decide
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))

    def connect(self):
        super().connect()
        self._answered_at = float("-inf")
        self._uncommitted_write = False
