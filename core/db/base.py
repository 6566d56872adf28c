"""PostgreSQL (psycopg2), with Django's per-request connection health check skipped for a
connection that answered moments ago.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before the first query of every request on a
reused connection. On the charge POST that is a third of the request's database round trips:
CPU in the web and in PostgreSQL, two context switches and a GIL hand-over, to learn what the
previous request learned milliseconds earlier. A connection whose last request used it without a
connection-level error less than `RECENT` seconds ago is not checked again; one idle for longer
(the case the check exists for: PostgreSQL restarted, a proxy dropped it) still is. Failures are
handled as before: a query that fails on a dead connection marks it, and Django closes it at the
end of the request."""

import time

from django.db.backends.postgresql import base

RECENT = 1.0  # seconds


class DatabaseWrapper(base.DatabaseWrapper):
    _answered_at = float("-inf")  # monotonic time at which the connection last proved usable
    _used = False  # a cursor was created since the last request boundary

    def create_cursor(self, name=None):
        self._used = True
        return super().create_cursor(name)

    def close_if_unusable_or_obsolete(self):
        # Runs at every request's start and end: a connection used since the last boundary and
        # still open without errors after Django's own checks has just answered.
        used, self._used = self._used, False
        super().close_if_unusable_or_obsolete()
        if used and self.connection is not None and not self.errors_occurred:
            self._answered_at = time.monotonic()

    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self._answered_at < RECENT
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def connect(self):
        super().connect()
        self._answered_at = float("-inf")
