"""Server-side prepared statements for the hot statements of any app (the settle, the account
lock, the charge POST's insert, the notifications' outbox).

PostgreSQL plans every statement psycopg2 sends, and for the settle's set-based statements and
the charge POST's guarded insert planning cost more than running them: the guarded insert took
0.41 ms of PostgreSQL CPU unprepared and 0.18 ms prepared. A statement here is prepared once per
database session (the first time the session runs it) and executed by name after that, on the
plan made once for the session: every connection sets `plan_cache_mode = force_generic_plan`
(config/settings/base.py), else PostgreSQL plans a statement with array parameters again each time.

Prepared statements are session state and survive a rollback. A session can still lose them (a
pooler's `DISCARD ALL`): then the execution fails with 26000 before doing anything; outside a
transaction it is prepared again and retried, inside one the error propagates (the transaction
is aborted) and the session's statements are forgotten, so the caller's retry prepares them."""

from __future__ import annotations

from django.db import DatabaseError

_INVALID_STATEMENT_NAME = "26000"
_READS: set[str] = set()  # the names of the statements that only read (each a SELECT)


class PreparedStatement:
    def __init__(self, name: str, sql: str, types: list[str]):
        """`sql` uses $1..$n for the parameters, whose PostgreSQL types `types` lists."""
        self.name = name
        self.types = types
        self._prepare = f"PREPARE {name} ({', '.join(types)}) AS {sql}" if types else f"PREPARE {name} AS {sql}"
        self._execute = f"EXECUTE {name} ({', '.join(['%s'] * len(types))})" if types else f"EXECUTE {name}"
        if sql.lstrip()[:7].upper() == "SELECT ":
            _READS.add(name)

    def execute(self, cursor, params: list) -> None:
        """Run on a Django cursor; fetch the results from the cursor as usual."""
        db = cursor.db
        if self.name not in _prepared_in(db):
            cursor.execute(self._prepare)
            _prepared_in(db).add(self.name)
        try:
            cursor.execute(self._execute, params)
        except DatabaseError as exc:
            if getattr(exc.__cause__, "pgcode", None) != _INVALID_STATEMENT_NAME:
                raise
            _prepared_in(db).clear()  # the session lost all of them
            if db.in_atomic_block:
                raise
            cursor.execute(self._prepare)
            _prepared_in(db).add(self.name)
            cursor.execute(self._execute, params)


def executes_a_read(sql: str) -> bool:
    """Whether `sql` (an `EXECUTE name ...`) runs one of these statements that is a SELECT: a read,
    for the answer to a lost connection (core/db/writes.py). A SELECT records nothing: a
    data-modifying WITH can only open a statement, and none of these calls a function that writes."""
    name = sql.split(None, 2)[1] if sql[:8].upper() == "EXECUTE " else ""
    return name in _READS


def _prepared_in(db) -> set[str]:
    """Names prepared in the current session of this Django connection (a reconnect is a new
    session: the set goes with the psycopg2 connection object it was made for)."""
    raw = db.connection
    held = getattr(db, "_prepared_statements", None)
    if held is None or held[0] is not raw:
        held = (raw, set())
        db._prepared_statements = held
    return held[1]


def array_literal(values) -> str:
    """One PostgreSQL array literal (`{1,NULL,3}`), read as the prepared parameter's array type.

    psycopg2 would send a list as an `ARRAY[...]` constructor that PostgreSQL parses element by
    element: three times slower for the settle's entry insert. Only ints, None and names
    without commas, quotes, braces or spaces (the ledger's entry kinds, event types) go through
    here, so no element needs quoting."""
    values = values if isinstance(values, list | tuple) else list(values)
    if None in values:
        return "{" + ",".join("NULL" if value is None else str(value) for value in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"  # the common case, without a Python step per value
