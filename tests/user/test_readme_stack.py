"""The system as a user runs it: the README's own `make up`, on databases of its own (never the
test database), with the sandbox provider `make up` starts and its record kept between runs as a
real provider account outlives our databases, under the development settings and then the
production ones. What is checked is what a user sees: the API's answers, the provider's record,
the pages in a real browser (screenshots under test-artifacts/user/)."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import requests

from devstack.processes import free_port
from tests.ops.test_stack import WORKER_PAGES, _flower_worker_page, browser, private_redis  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "user"
PASSWORD = "a-user-password-123"
# What a user's shell has; nothing of the test session's own settings or databases.
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME")

pytestmark = [pytest.mark.slow]


@dataclass
class UserStack:
    process: subprocess.Popen
    url: str
    env: dict
    log: Path

    @property
    def flower_url(self) -> str:
        return f"http://127.0.0.1:{self.env['FLOWER_PORT']}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def stop(self) -> None:
        """What Ctrl-C in the terminal does."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _admin_dsn() -> dict:
    return dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")


def _drop_database(name: str) -> None:
    conn = psycopg2.connect(**_admin_dsn())
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def _user_env(tmp: Path, *, database: str, redis_url: str, sandbox_db: Path, extra: dict | None = None) -> dict:
    env = {key: os.environ[key] for key in KEPT if key in os.environ}
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
        REDIS_URL=redis_url,
        PORT=str(free_port(8500, 8599)),
        FLOWER_PORT=str(free_port(5700, 5799)),
        PROVIDER_PORT=str(free_port(8600, 8699)),
        SANDBOX_DB=str(sandbox_db),
        ENV_FILE=str(tmp / "user.env"),  # the first run writes it, as in a new checkout
        BEAT_SCHEDULE_DIR=str(tmp),
        WEB_WORKERS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def _make_up(env: dict, log: Path) -> UserStack:
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["make", "up"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack = UserStack(process, f"http://127.0.0.1:{env['PORT']}", env, log)
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"make up exited with {process.returncode}:\n{stack.tail()}")
        try:
            if requests.get(f"{stack.url}/api/v1/ready/", timeout=5).status_code == 200:
                return stack
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stack.stop()
            pytest.fail(f"ready never answered 200:\n{stack.tail()}")
        time.sleep(0.5)


def _manage(stack: UserStack, *args: str, extra: dict | None = None) -> None:
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", *args],
        cwd=ROOT,
        env={**stack.env, **(extra or {})},
        check=True,
        capture_output=True,
        timeout=120,
    )


def _token(stack: UserStack, username: str) -> dict:
    answer = requests.post(
        f"{stack.url}/api/v1/auth/token/", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access']}"}


def _poll(url: str, headers: dict, done, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(url, headers=headers, timeout=10).json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def _funded_seller(stack: UserStack, credit: int) -> dict:
    """As the README says: create the first admin, then a seller with credit, over the API."""
    _manage(
        stack,
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
        extra={"DJANGO_SUPERUSER_PASSWORD": PASSWORD},
    )
    admin = _token(stack, "admin")
    created = requests.post(
        f"{stack.url}/api/v1/sellers/",
        json={"username": "shop", "password": PASSWORD, "name": "Corner Shop"},
        headers=admin,
        timeout=10,
    )
    assert created.status_code == 201, created.text
    seller = _token(stack, "shop")
    deposit = requests.post(f"{stack.url}/api/v1/deposits/", json={"amount": credit}, headers=seller, timeout=10)
    assert deposit.status_code == 201, deposit.text
    approve = requests.post(f"{stack.url}/api/v1/deposits/{deposit.json()['id']}/approve/", headers=admin, timeout=10)
    assert approve.status_code == 202, approve.text
    body = _poll(f"{stack.url}/api/v1/deposits/{deposit.json()['id']}/", admin, lambda d: d["status"] == "approved")
    assert body["status"] == "approved", body
    return seller


def _sell(stack: UserStack, seller: dict, sales: list[tuple[str, int]]) -> list[dict]:
    ids = []
    for number, amount in sales:
        answer = requests.post(
            f"{stack.url}/api/v1/charges/", json={"phone_number": number, "amount": amount}, headers=seller, timeout=10
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    return [
        _poll(f"{stack.url}/api/v1/charges/{i}/", seller, lambda c: c["status"] != "queued", timeout=90) for i in ids
    ]


def _completed_top_ups(sandbox_db: Path) -> set[str]:
    """The external ids the provider completed, read from its own record."""
    conn = sqlite3.connect(sandbox_db)
    try:
        return {row[0] for row in conn.execute("SELECT external_id FROM transactions WHERE status = 'COMPLETED'")}
    finally:
        conn.close()


def test_two_stacks_on_fresh_databases_each_deliver_every_top_up_they_sell(private_redis, tmp_path):  # noqa: F811
    """The same sales on the README's stack twice, each time on a fresh database, against one
    provider record: every charge the second database sells is a new top-up at the provider."""
    sandbox_db = tmp_path / "provider.sqlite3"
    sales = [(f"+98912555{1000 + i}", 20_000_000 + 1_000_000 * i) for i in range(10)]  # MCI ranged, 1/100 IRR
    delivered: list[set[str]] = []
    for run in (1, 2):
        database = f"ledger_user_{os.getpid()}_{run}"
        _drop_database(database)
        env = _user_env(tmp_path, database=database, redis_url=private_redis, sandbox_db=sandbox_db)
        stack = _make_up(env, tmp_path / f"make-up-{run}.log")
        try:
            before = _completed_top_ups(sandbox_db)
            seller = _funded_seller(stack, 100_000)
            charges = _sell(stack, seller, sales)
            assert [c["status"] for c in charges] == ["succeeded"] * len(sales), (charges, stack.tail())
            new = _completed_top_ups(sandbox_db) - before
            assert len(new) == len(sales), f"run {run}: {len(new)} new top-ups for {len(sales)} sales"
            delivered.append(new)
            me = requests.get(f"{stack.url}/api/v1/me/", headers=seller, timeout=10).json()["seller"]
            assert (me["balance"], me["held"]) == (100_000 - sum(c["amount"] for c in charges), 0)
            assert all(0 < c["amount"] < c["destination_amount"] for c in charges)  # cents for rials
        finally:
            stack.stop()
            _drop_database(database)
    assert not delivered[0] & delivered[1]


def test_production_settings_stack_serves_the_docs_the_admin_and_flower(private_redis, tmp_path, browser):  # noqa: F811
    """`make up` under config.settings.production, as docs/operations.md allows without Docker:
    the API docs and the admin login render, never a 500 for a missing static manifest, and
    Flower's page of every worker shows its queues and registered tasks."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    database = f"ledger_user_{os.getpid()}_prod"
    _drop_database(database)
    env = _user_env(
        tmp_path,
        database=database,
        redis_url=private_redis,
        sandbox_db=tmp_path / "provider.sqlite3",
        extra={
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "FLOWER_BASIC_AUTH": f"ops:{secrets.token_urlsafe(18)}",
            "METRICS_TOKEN": secrets.token_urlsafe(24),
            # Plain http on loopback: no TLS proxy in front to set X-Forwarded-Proto.
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
        },
    )
    stack = _make_up(env, tmp_path / "make-up-production.log")
    try:
        for path, marker in (
            ("/api/v1/docs/", "swagger-ui"),
            ("/api/v1/redoc/", "redoc"),
            ("/admin/login/", "id_username"),
        ):
            answer = requests.get(f"{stack.url}{path}", timeout=10)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:500], stack.tail())
            assert marker in answer.text, (path, answer.text[:500])

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.get(f"{stack.url}/api/v1/docs/")
        WebDriverWait(browser, 30).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 25, "Swagger UI rendered no operations"
        )
        paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert {"/api/v1/charges/", "/api/v1/auth/token/"} <= paths, paths
        browser.save_screenshot(str(ARTIFACTS / "production-swagger-ui.png"))
        browser.get(f"{stack.url}/api/v1/redoc/")
        WebDriverWait(browser, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[data-section-id="operation/charges_create"]'),
            "ReDoc rendered no operations",
        )
        browser.save_screenshot(str(ARTIFACTS / "production-redoc.png"))
        browser.get(f"{stack.url}/admin/login/")
        assert browser.find_element(By.ID, "id_username")
        # The admin's stylesheet came through: the login box is laid out, not unstyled text.
        assert browser.find_element(By.ID, "container").value_of_css_property("display") != "inline"
        browser.save_screenshot(str(ARTIFACTS / "production-admin-login.png"))

        credentials = base64.b64encode(env["FLOWER_BASIC_AUTH"].encode()).decode()
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}})
        shard_queues = set()
        for name in WORKER_PAGES:
            queues, tasks = _flower_worker_page(browser, stack, name)
            assert "ledger.settle_shard" in tasks, (name, tasks)
            shard_queues |= {q for q in queues if q.startswith("ledger.shard.")}
        assert shard_queues == {f"ledger.shard.{k}" for k in range(4)}, shard_queues  # LEDGER_SHARDS' default
    finally:
        stack.stop()
        _drop_database(database)
