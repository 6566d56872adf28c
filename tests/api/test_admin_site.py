import pytest
from django.contrib.auth.models import Group

from core.models import SellerAPIKey
from tests.factories import make_admin, make_seller


@pytest.mark.django_db
def test_role_groups_carry_admin_site_permissions():
    approver = set(Group.objects.get(name="approver").permissions.values_list("codename", flat=True))
    auditor = set(Group.objects.get(name="auditor").permissions.values_list("codename", flat=True))
    assert {"view_charge", "view_entry", "change_deposit"} <= approver
    assert "view_deposit" in auditor and not any(code.startswith(("change_", "add_", "delete_")) for code in auditor)
    assert "change_deposit" not in auditor


@pytest.mark.django_db
def test_admin_site_issues_a_seller_key_shown_once(client):
    client.force_login(make_admin())
    seller = make_seller()
    response = client.post("/admin/core/sellerapikey/add/", {"name": "erp", "seller": seller.pk}, follow=True)
    assert response.status_code == 200
    api_key = SellerAPIKey.objects.get(seller=seller)
    shown = [str(m) for m in response.context["messages"] if api_key.prefix in str(m)]
    assert len(shown) == 1
    full_key = shown[0].split("is: ")[1].split(". ")[0]
    assert SellerAPIKey.objects.get_from_key(full_key) == api_key
