import pytest

from tests.api.helpers import assert_error, bearer
from tests.factories import PASSWORD, make_admin, make_seller


@pytest.mark.django_db
def test_admin_creates_staff_whose_role_decides_what_they_may_do():
    admin = bearer(make_admin())
    created = admin.post("/api/v1/staff/", {"username": "ann", "password": PASSWORD, "role": "auditor"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in ("username", "role", "is_active")} == {
        "username": "ann",
        "role": "auditor",
        "is_active": True,
    }

    from django.contrib.auth import get_user_model

    ann = get_user_model().objects.get(pk=body["id"])
    deposit_id = bearer(make_seller().user).post("/api/v1/deposits/", {"amount": 100}, format="json").json()["id"]
    assert_error(bearer(ann).post(f"/api/v1/deposits/{deposit_id}/approve/"), 403, "permission_denied")

    promoted = admin.patch(f"/api/v1/staff/{ann.pk}/", {"role": "approver"}, format="json")
    assert promoted.status_code == 200 and promoted.json()["role"] == "approver"
    assert bearer(ann).post(f"/api/v1/deposits/{deposit_id}/approve/").status_code == 202

    deactivated = admin.patch(f"/api/v1/staff/{ann.pk}/", {"is_active": False}, format="json")
    assert deactivated.json()["is_active"] is False
    assert_error(bearer(ann).get("/api/v1/deposits/"), 401, "not_authenticated")
    listed = {row["username"]: row for row in admin.get("/api/v1/staff/").json()["results"]}
    assert listed["ann"]["role"] == "approver" and listed["ann"]["is_active"] is False


@pytest.mark.django_db
def test_staff_api_refuses_bad_input_sellers_and_self_lockout():
    user = make_admin()
    admin = bearer(user)
    assert_error(
        admin.post("/api/v1/staff/", {"username": "bob", "password": PASSWORD, "role": "seller"}, format="json"),
        400,
        "invalid",
    )
    admin.post("/api/v1/staff/", {"username": "bob", "password": PASSWORD, "role": "auditor"}, format="json")
    assert_error(
        admin.post("/api/v1/staff/", {"username": "bob", "password": PASSWORD, "role": "auditor"}, format="json"),
        400,
        "invalid",
    )
    # A seller's user is not staff.
    assert_error(admin.get(f"/api/v1/staff/{make_seller().user.pk}/"), 404, "not_found")
    assert_error(admin.patch(f"/api/v1/staff/{user.pk}/", {"is_active": False}, format="json"), 409, "invalid_state")
    assert_error(admin.patch(f"/api/v1/staff/{user.pk}/", {"role": "auditor"}, format="json"), 409, "invalid_state")


@pytest.mark.django_db(transaction=True)
def test_two_requests_racing_for_one_username_get_201_and_400_never_500():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    admin = make_admin()

    def create(path_and_body):
        path, body = path_and_body
        try:
            return bearer(admin).post(path, body, format="json").status_code
        finally:
            connection.close()

    for path, extra in [("/api/v1/staff/", {"role": "auditor"}), ("/api/v1/sellers/", {"name": "Twin"})]:
        body = {"username": f"twin-{path.strip('/').split('/')[-1]}", "password": PASSWORD, **extra}
        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(create, [(path, body)] * 8))
        assert codes == [201] + [400] * 7, (path, codes)


@pytest.mark.django_db
def test_an_admin_by_role_cannot_deactivate_a_superuser():
    from tests.factories import make_staff

    superuser, admin_by_role = make_admin(), make_staff("admin")
    assert_error(
        bearer(admin_by_role).patch(f"/api/v1/staff/{superuser.pk}/", {"is_active": False}, format="json"),
        409,
        "invalid_state",
    )
    superuser.refresh_from_db()
    assert superuser.is_active
    login = {"username": superuser.username, "password": PASSWORD}
    assert bearer(superuser).post("/api/v1/auth/token/", login, format="json").status_code == 200
    # Another superuser may (and the admin by role may still deactivate other staff).
    assert (
        bearer(make_admin()).patch(f"/api/v1/staff/{superuser.pk}/", {"is_active": False}, format="json").status_code
        == 200
    )
    other = make_staff("auditor")
    assert (
        bearer(admin_by_role).patch(f"/api/v1/staff/{other.pk}/", {"is_active": False}, format="json").status_code
        == 200
    )
