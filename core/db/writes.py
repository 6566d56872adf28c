"""Whether a request may have recorded anything in the database, for the answer to a lost
connection (core/errors.py): a request that sent nothing that can write is answered 503 with
`Retry-After` ("nothing was recorded, retry"); after a possible write the outcome is unknown.

Watched with Django's documented hook for statements, `connection.execute_wrapper()`, installed
on the primary connection around each request by `DatabaseWritesMiddleware`. A statement counts
as a possible write unless it is a read (`_READ_ONLY`), or the backend had ended the session
before it was sent: an ended session's socket is readable (the server's last message waits, or
the socket is closed), which one zero-timeout `poll()` tells without a round trip, and a statement
sent there cannot have run.

A write inside a transaction counts when it is sent, whether the transaction later commits or
not: Django sends COMMIT and ROLLBACK outside any cursor, where no documented hook sees them, and
counting the write errs toward "may have written", the safe side (the client checks, or retries
with its Idempotency-Key).

Stale connections are Django's `CONN_HEALTH_CHECKS` (config/settings/base.py): a reused
connection is checked before the first query of each request and replaced if dead."""

import select

from django.db import DEFAULT_DB_ALIAS, connections

from core.db.prepared import executes_a_read

# Statements that never record anything, and the EXECUTE of a prepared SELECT. Anything else
# (INSERT, UPDATE, DELETE, a WITH that may modify, EXECUTE of any other prepared statement,
# COPY ...) counts as a possible write.
_READ_ONLY = ("SELECT", "SHOW", "SET ", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "PREPARE", "DEALLOCATE")


def may_write(sql) -> bool:
    text = (sql if isinstance(sql, str) else str(sql)).lstrip()
    return not (text[:10].upper().startswith(_READ_ONLY) or executes_a_read(text))


def session_ended(db) -> bool:
    """True if the server sent something to this idle connection (its termination) or the socket
    is closed or broken: a statement sent now would fail without having run."""
    try:
        fd = db.connection.fileno()
    except Exception:  # psycopg2 raises InterfaceError on a closed connection: nothing can run there
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class WriteTracker:
    """An execute wrapper: `may_have_written` once a statement that can write was sent to a live
    backend. Counted before the statement runs: one that fails may still have been applied."""

    may_have_written = False

    def __call__(self, execute, sql, params, many, context):
        if not self.may_have_written and may_write(sql) and not session_ended(context["connection"]):
            self.may_have_written = True
        return execute(sql, params, many, context)


class DatabaseWritesMiddleware:
    """Tracks each request's possible writes on the primary (`request.database_writes`), which
    is where every write goes (core/db/router.py)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        writes = request.database_writes = WriteTracker()
        with connections[DEFAULT_DB_ALIAS].execute_wrapper(writes):
            return self.get_response(request)
