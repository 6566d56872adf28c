"""An HTTP client of the cluster (cluster.py), as a seller and an admin would drive it: logins,
sellers, deposits approved, charges. tests/hosts/ and `python -m bench.hosts` drive the stack with it."""

import itertools

import requests

PASSWORD = "correct-horse-battery"
# Phones without the sandbox's magic endings (docs/provider.md): every top-up succeeds.
_phones = (f"+98912{n:06d}0" for n in itertools.count(1))


def next_phone() -> str:
    return next(_phones)


def login(url: str, username: str, password: str = PASSWORD) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{url}/api/v1/auth/token/", json={"username": username, "password": password}, timeout=10)
    answer.raise_for_status()
    session.headers["Authorization"] = f"Bearer {answer.json()['access']}"
    return session


def create_seller(admin: requests.Session, url: str, username: str) -> int:
    body = {"username": username, "password": PASSWORD, "name": username}
    answer = admin.post(f"{url}/api/v1/sellers/", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def fund(seller: requests.Session, seller_url: str, admin: requests.Session, admin_url: str, amount: int) -> None:
    """The seller asks for a deposit on one web host, the admin approves it on another."""
    answer = seller.post(f"{seller_url}/api/v1/deposits/", json={"amount": amount}, timeout=10)
    assert answer.status_code == 201, answer.text
    approved = admin.post(f"{admin_url}/api/v1/deposits/{answer.json()['id']}/approve/", timeout=10)
    assert approved.status_code == 202, approved.text


def charge(session: requests.Session, url: str, amount: int = 1) -> requests.Response:
    return session.post(f"{url}/api/v1/charges/", json={"phone_number": next_phone(), "amount": amount}, timeout=10)
