"""Every PostgreSQL backend of the test database terminated again and again (as a failover or a
restart does) while clients hammer gunicorn over real HTTP: keyed charges and deposits, lists,
reads and logins. The contract (docs/api.md, "Errors"): each answer is a success, or a 503 with
`Retry-After` in the error shape; a keyed write retried with its key is recorded exactly once;
the ledger audits clean afterwards."""

import itertools
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg2
import pytest
import requests
from django.db import connection

from ledger.models import Charge, Deposit
from tests.api.live import Api
from tests.factories import PASSWORD, make_admin, make_seller, request_and_approve
from tests.faults.stack import terminate_database_backends
from tests.support import assert_ledger_audit, settle_through_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CUTS = 16  # rounds of pg_terminate_backend
CUT_EVERY = 0.25  # seconds between them
PHONE = "09121234567"
CHARGES, DEPOSITS = "/api/v1/charges/", "/api/v1/deposits/"
UNAVAILABLE = "service_unavailable"


@dataclass
class Answers:
    """Every answer the clients got, and what each keyed write was answered with."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    broken: list[str] = field(default_factory=list)  # answers outside the contract
    unavailable: int = 0  # 503 + Retry-After
    total: int = 0
    # path -> key -> the ids its successes answered
    ids: dict[str, dict[str, set[int]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(set)))

    def note(self, what: str, response: requests.Response | None) -> bool:
        """Record one answer; True if the request is done (a success), False to retry it."""
        with self.lock:
            self.total += 1
            if response is None:
                self.broken.append(f"{what}: no answer")
                return False
            if response.status_code < 300:
                return True
            if response.status_code == 503 and response.headers.get("Retry-After") and _code(response) == UNAVAILABLE:
                self.unavailable += 1
                return False
            self.broken.append(f"{what}: {response.status_code} {response.text[:200]}")
            return False


def _code(response: requests.Response) -> str | None:
    try:
        return response.json().get("code")
    except ValueError:
        return None


def _send(api: Api, method: str, path: str, **kwargs) -> requests.Response | None:
    try:
        return api.request(method, path, **kwargs)
    except requests.RequestException:
        api.session.close()  # a fresh connection, as a client library would after a reset
        return None


def _until_done(answers: Answers, api: Api, what: str, method: str, path: str, **kwargs) -> requests.Response:
    """One request, retried as an integrator would (the same body and key) until it succeeds.
    Retry-After is 1 s; the test waits less, since it checks the server, not the client."""
    deadline = time.monotonic() + 30
    while True:
        response = _send(api, method, path, **kwargs)
        if answers.note(what, response):
            return response
        assert time.monotonic() < deadline, f"{what}: never succeeded"
        time.sleep(0.02)


def _charge(n: int) -> dict:
    return {"phone_number": PHONE, "amount": 100 + n % 7}


def _keyed_writes(answers, api, stop, prefix, path, body):
    """POSTs with a new key each, every one retried with its key until it succeeds."""
    for n in itertools.count():
        if stop.is_set():
            return
        key = f"{prefix}-{n}"
        response = _until_done(
            answers, api, f"POST {path} {key}", "POST", path, json=body(n), headers={"Idempotency-Key": key}
        )
        with answers.lock:
            answers.ids[path][key].add(response.json()["id"])


def _reads(answers, api, stop, username):
    """Lists and the seller's profile (the user loaded by the authentication), and logins."""
    paths = ["/api/v1/charges/", "/api/v1/deposits/", "/api/v1/transactions/", "/api/v1/me/"]
    for n in itertools.count():
        if stop.is_set():
            return
        if n % 5 == 4:
            body = {"username": username, "password": PASSWORD}
            _until_done(answers, Api(api.base_url), "login", "POST", "/api/v1/auth/token/", json=body)
        else:
            path = paths[n % len(paths)]
            _until_done(answers, api, f"GET {path}", "GET", path)


def test_database_backends_terminated_under_load_answer_success_or_503(live_server_url):
    sellers, admin = [make_seller(), make_seller()], make_admin()
    for seller in sellers:  # funded, so that some of the charges succeed
        request_and_approve(seller, 50_000, admin)
        settle_through_provider(seller.pk)
    answers, stop = Answers(), threading.Event()
    clients = []
    for seller in sellers:
        api = Api.login(live_server_url, seller.user.get_username(), PASSWORD)
        prefix = f"s{seller.pk}"
        clients += [(_keyed_writes, api.clone(), stop, f"{prefix}-c{i}", CHARGES, _charge) for i in range(3)]
        clients.append((_keyed_writes, api.clone(), stop, f"{prefix}-d", DEPOSITS, lambda n: {"amount": 1_000 + n}))
        clients.append((_reads, api.clone(), stop, seller.user.get_username()))
    errors: list[BaseException] = []

    def run(work, *args):
        try:
            work(answers, *args)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=client, daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    for _ in range(CUTS):
        terminate_database_backends()
        time.sleep(CUT_EVERY)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors

    broken = "\n".join(answers.broken[:20])
    assert not answers.broken, f"{len(answers.broken)} of {answers.total} answers broke the contract:\n{broken}"
    assert answers.unavailable > 0, "no request met a terminated backend: the test proved nothing"
    # Every key was answered with one object, the only one recorded for it, and no key recorded
    # an object its client was not answered with.
    for model, path in ((Charge, CHARGES), (Deposit, DEPOSITS)):
        recorded = model.objects.filter(seller__in=sellers, idempotency_key__isnull=False)
        answered = answers.ids[path]
        assert all(len(ids) == 1 for ids in answered.values()), answered
        assert dict(recorded.values_list("idempotency_key", "id")) == {key: min(ids) for key, ids in answered.items()}
    for seller in sellers:
        settle_through_provider(seller.pk)
        assert_ledger_audit(seller.pk)


def test_a_csv_export_whose_connection_is_cut_before_its_first_row_answers_503(live_server_url):
    """The export streams: its query ran after the view had returned, and a connection cut there
    was answered by gunicorn itself (an HTML 500). Held at its first query by a lock, its backend
    terminated, it must answer like the JSON list does."""
    seller = make_seller()
    request_and_approve(seller, 50_000, make_admin())
    settle_through_provider(seller.pk)
    api = Api.login(live_server_url, seller.user.get_username(), PASSWORD)
    params = connection.get_connection_params()
    holder, admin = psycopg2.connect(**params), psycopg2.connect(**params)
    admin.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE ledger_entry IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(api.get, "/api/v1/transactions/export/")
            with admin.cursor() as cursor:
                waiting = _backend_waiting_for_a_lock(cursor)
                cursor.execute("SELECT pg_terminate_backend(%s)", [waiting])
            holder.rollback()
            response = answer.result(timeout=30)
    finally:
        holder.close()
        admin.close()
    assert response.status_code == 503, response.text[:300]
    assert response.headers["Retry-After"] == "1" and response.json()["code"] == "service_unavailable"
    assert api.get("/api/v1/transactions/export/").text.count("\n") == 2  # the header and the deposit


def _backend_waiting_for_a_lock(cursor) -> int:
    deadline = time.monotonic() + 10
    while True:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
        if row:
            return row[0]
        assert time.monotonic() < deadline, "the export never reached its query"
        time.sleep(0.02)
