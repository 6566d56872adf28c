"""Writes and migrations on the primary, always; reads where the code asks.

The router does not choose where reads go (`db_for_read` has no opinion, so Django reads from the
primary, or from the database an instance came from for its related objects): the few reads that
may run on the replica ask for it with `.using()`, through `core.db.replica` (why: its docstring).
What the router guarantees is that nothing read from the replica is ever written back there (a
standby refuses writes), that objects from the two databases may be related (they hold the same
rows), and that `migrate` never runs against the replica (the primary's schema reaches it by
replication)."""

from core.db.replica import PRIMARY, REPLICA

_SAME_DATA = {PRIMARY, REPLICA}


class PrimaryReplicaRouter:
    def db_for_read(self, model, **hints):
        return None

    def db_for_write(self, model, **hints):
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints):
        # Django's documented primary/replica router: `_state.db` is the database an instance came from.
        if obj1._state.db in _SAME_DATA and obj2._state.db in _SAME_DATA:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return False if db == REPLICA else None
