"""List views whose GET may read the streaming replica (core/db/replica.py)."""

from core.db.replica import PRIMARY, read_heavy


class HeavyReadListMixin:
    """The GET of a list runs on the heavy-read database: the replica while it keeps up, else the
    primary, and the primary again if the replica fails the query (pagination's count included).
    Put it before the view's other bases; the POST of the same view and `get_object` stay on the
    primary."""

    read_alias = PRIMARY

    def get_queryset(self):
        return super().get_queryset().using(self.read_alias)

    def list(self, request, *args, **kwargs):
        def run(alias: str):
            # Per request: DRF makes a view instance for each. The response's data is serialized
            # inside `list`, so every query of the answer runs on `alias` before it returns.
            self.read_alias = alias
            return super(HeavyReadListMixin, self).list(request, *args, **kwargs)

        return read_heavy(run)
