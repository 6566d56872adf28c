"""The migration that brought the hash chain gives entries written before it exactly what the settle
would have written: their hashes and held credit are recomputed from the rows alone."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ledger.models import Account, Entry
from tests.statements.test_chain import _busy_seller

CHAIN = ("ledger", "0011_entry_hash_chain")


def _before_the_chain() -> tuple[str, str]:
    graph = MigrationExecutor(connection).loader.graph
    return next(parent.key for parent in graph.node_map[CHAIN].parents if parent.key[0] == "ledger")


def _latest_ledger_migration() -> tuple[str, str]:
    executor = MigrationExecutor(connection)
    return next(node for node in executor.loader.graph.leaf_nodes() if node[0] == "ledger")


@pytest.mark.django_db(transaction=True)
def test_the_backfill_recomputes_what_the_settle_wrote():
    sellers = [_busy_seller(), _busy_seller(charges=(1_000, 20_000, 2_000))]
    written = {
        s.pk: list(Entry.objects.filter(seller=s).order_by("seq").values_list("seq", "hash", "held_after"))
        for s in sellers
    }
    heads = {s.pk: bytes(Account.objects.get(seller=s).last_hash) for s in sellers}
    assert any(held > 0 for rows in written.values() for _, _, held in rows)  # holds open between batches
    latest = _latest_ledger_migration()

    MigrationExecutor(connection).migrate([_before_the_chain()])
    MigrationExecutor(connection).migrate([latest])

    for seller in sellers:
        again = list(Entry.objects.filter(seller=seller).order_by("seq").values_list("seq", "hash", "held_after"))
        assert [(q, bytes(h), held) for q, h, held in again] == [
            (q, bytes(h), held) for q, h, held in written[seller.pk]
        ]
        assert bytes(Account.objects.get(seller=seller).last_hash) == heads[seller.pk]
