"""Prefixes loaded from a file for a provider that publishes none; a sync keeps them."""

import copy

import pytest
from django.core.management import CommandError, call_command

from catalog.models import NumberingPrefix, Operator
from catalog.selectors import operator_for_number
from catalog.services.prefixes import prefixes_load
from catalog.services.sync import catalog_sync
from providers import get_provider

pytestmark = pytest.mark.django_db


def test_loaded_prefixes_resolve_numbers_and_a_sync_keeps_them_unless_the_provider_publishes_some(
    synced, tmp_path, capsys, shipped, sandbox_catalog
):
    glo = Operator.objects.get(name="Glo")
    path = tmp_path / "prefixes.csv"
    path.write_text(f"operator,prefix\n{glo.provider_operator_id},+2348031\n{glo.provider_operator_id},234805\n")
    call_command("load_prefixes", str(path))
    assert "prefixes: 1 added, 1 already there" in capsys.readouterr().out
    assert operator_for_number(msisdn="+2348031234567").operator == glo  # longer than MTN's 234803
    data = copy.deepcopy(shipped)
    next(op for op in data["operators"] if op["name"] == "Glo")["numbering_prefixes"] = []
    sandbox_catalog.replace_catalog(data)  # a provider that publishes no prefixes for Glo
    catalog_sync(provider=get_provider())
    assert NumberingPrefix.objects.filter(operator=glo, prefix="2348031").exists()
    sandbox_catalog.replace_catalog(shipped)
    catalog_sync(provider=get_provider())
    # Glo's published prefixes replace its own at a sync: a provider that publishes them decides.
    assert not NumberingPrefix.objects.filter(operator=glo, prefix="2348031").exists()


def test_a_file_with_any_bad_row_loads_nothing(synced, tmp_path):
    result = prefixes_load(provider="sandbox", text="operator,prefix\n401,2348039\n999999,2340\n401,abc\n")
    assert len(result.problems) == 2 and result.added == 0
    assert not NumberingPrefix.objects.filter(prefix="2348039").exists()
    path = tmp_path / "bad.csv"
    path.write_text("operator,prefix\n999999,2340\n")
    with pytest.raises(CommandError):
        call_command("load_prefixes", str(path))
