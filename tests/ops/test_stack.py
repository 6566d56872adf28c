"""`manage.py runstack`, the local stack command, as a user runs it: every process on free ports,
`ready` turns 200, a charge goes end to end over HTTP, the admin site, Flower and the API docs
pages work in a real (headless Chromium) browser that cannot reach any other host, and Ctrl-C
leaves no process behind."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from django.conf import settings

from devstack.processes import free_port
from ledger.models import Deposit
from ledger.services.deposits import deposit_request
from tests.factories import PASSWORD, make_admin, make_seller
from tests.support import assert_ledger_audit, subprocess_env, wait_settled
from workers.heartbeat import live_workers

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ops"
HOST = socket.gethostname()
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers, pytest.mark.slow]


@dataclass
class Stack:
    process: subprocess.Popen
    url: str
    flower_url: str
    flower_auth: tuple[str, str]
    metrics_token: str
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _start_runstack(env: dict, log: Path) -> subprocess.Popen:
    """`manage.py runstack` in its own session (so Ctrl-C can be sent to its whole group)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "runstack"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def stack(django_db_setup, broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runstack")
    port, flower_port = free_port(8300, 8399), free_port(5600, 5699)
    user, password = "ops", secrets.token_urlsafe(16)
    token = secrets.token_urlsafe(24)
    env = subprocess_env(
        {
            "PORT": str(port),
            "FLOWER_PORT": str(flower_port),
            "WEB_WORKERS": "1",
            "LEDGER_WORKER_PROCESSES": "2",
            "FLOWER_BASIC_AUTH": f"{user}:{password}",
            "METRICS_TOKEN": token,
            "BEAT_SCHEDULE_DIR": str(tmp),
        }
    )
    env.pop("LEDGER_WORKER_SHARDS", None)
    log = tmp / "runstack.log"
    process = _start_runstack(env, log)
    running = Stack(
        process, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}", (user, password), token, log
    )
    try:
        _wait(lambda: _ready(running), 90, "ready never answered 200", running)
        _wait(
            lambda: {f"shards0@{HOST}", f"shards1@{HOST}"} <= set(live_workers()),
            60,
            "the shard workers never announced themselves",
            running,
        )
        yield running
    finally:
        if process.poll() is None:
            children = psutil.Process(process.pid).children(recursive=True)
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            for child in children:
                if child.is_running():
                    child.kill()


def _ready(stack: Stack) -> bool:
    try:
        return requests.get(f"{stack.url}/api/v1/ready/", timeout=5).status_code == 200
    except requests.RequestException:  # not listening yet, or its worker still booting
        return False


def _wait(condition, timeout: float, message: str, stack: Stack | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if stack is not None and stack.process.poll() is not None:
            pytest.fail(f"runstack exited with {stack.process.returncode}:\n{stack.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{message} within {timeout}s" + (f":\n{stack.tail()}" if stack else ""))
        time.sleep(0.2)


def _token(stack: Stack, username: str) -> dict:
    response = requests.post(
        f"{stack.url}/api/v1/auth/token/", json={"username": username, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access']}"}


def _poll(url: str, headers: dict, field: str, until: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(url, headers=headers, timeout=10).json()
        if body[field] == until or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_stack_serves_a_charge_end_to_end_over_http(stack):
    admin, seller = make_admin(), make_seller()
    as_admin, as_seller = _token(stack, admin.username), _token(stack, seller.user.username)
    api = f"{stack.url}/api/v1"
    assert requests.get(f"{api}/health/", timeout=5).status_code == 200

    deposit = requests.post(f"{api}/deposits/", json={"amount": 100_000}, headers=as_seller, timeout=10)
    assert deposit.status_code == 201, deposit.text
    approve = requests.post(f"{api}/deposits/{deposit.json()['id']}/approve/", headers=as_admin, timeout=10)
    assert approve.status_code == 202, approve.text
    approved = _poll(f"{api}/deposits/{deposit.json()['id']}/", as_admin, "status", "approved")
    assert approved["status"] == "approved" and approved["balance_after"] == 100_000

    charge = requests.post(
        f"{api}/charges/",
        json={
            "phone_number": "+989121234567",
            "amount": 50_000_000,
        },  # MCI's 500,000 IRR (in 1/100 rial), as the stack synced it
        headers={**as_seller, "Idempotency-Key": "ops-e2e-1"},
        timeout=10,
    )
    assert charge.status_code == 202, charge.text
    assert (charge.json()["amount"], charge.json()["destination_currency"]) == (85, "IRR")  # its retail price, cents
    settled = _poll(f"{stack.url}{charge.headers['Location']}", as_seller, "status", "succeeded")
    assert settled["status"] == "succeeded" and settled["balance_after"] == 100_000 - 85, settled
    assert settled["delivered_amount"] == 50_000_000, settled
    assert requests.get(f"{api}/me/", headers=as_seller, timeout=10).json()["seller"]["balance"] == 100_000 - 85

    queues = requests.get(f"{api}/ops/queues/", headers=as_admin, timeout=10)
    assert queues.status_code == 200, queues.text
    for row in queues.json()["queues"]:
        assert f"shards{row['shard'] % 2}@{HOST}" in row["workers"], row

    metrics = requests.get(
        f"{api}/ops/metrics/", headers={"Authorization": f"Bearer {stack.metrics_token}"}, timeout=10
    )
    assert metrics.status_code == 200, metrics.text
    settled_total = re.search(r"^ledger_settled_intents_total (\S+)$", metrics.text, re.M)
    assert settled_total and float(settled_total.group(1)) >= 2, metrics.text
    assert re.search(r'^ledger_queue_consumers\{queue="ledger.shard.0"\} [1-9]', metrics.text, re.M)
    assert_ledger_audit()


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            f"headless browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install chromium chromium-driver (.ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        # No network beyond this machine: every name but 127.0.0.1 fails to resolve, as offline.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the pages make
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(5)  # find_element waits for the element instead of racing the page load
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def test_admin_approves_a_deposit_and_flower_shows_the_shard_workers(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    admin, seller = make_admin(), make_seller(name="Browser Test Seller")
    deposit, _ = deposit_request(seller=seller, amount=50_000)

    browser.get(f"{stack.url}/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys(admin.username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    WebDriverWait(browser, 20).until(
        lambda driver: "/admin/login/" not in driver.current_url, "the admin login did not go through"
    )

    def balance_cell():
        browser.get(f"{stack.url}/admin/core/seller/?q={seller.pk}")
        row = browser.find_element(By.XPATH, f'//tr[.//a[contains(@href, "/core/seller/{seller.pk}/")]]')
        assert "Browser Test Seller" in row.text, row.text
        return row.find_element(By.CSS_SELECTOR, ".field-balance").text

    assert balance_cell() == "0"
    browser.get(f"{stack.url}/admin/ledger/deposit/?status__exact=pending")
    browser.save_screenshot(str(ARTIFACTS / "1-admin-pending-deposits.png"))
    browser.find_element(By.CSS_SELECTOR, f'input[name="_selected_action"][value="{deposit.pk}"]').click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("approve_deposits")
    browser.find_element(By.CSS_SELECTOR, 'button[name="index"]').click()
    success = (
        WebDriverWait(browser, 20)
        .until(lambda driver: driver.find_elements(By.CSS_SELECTOR, ".messagelist .success"), "no success message")[0]
        .text
    )
    assert f"#{deposit.pk}" in success, success
    browser.save_screenshot(str(ARTIFACTS / "2-admin-approve-action.png"))

    wait_settled(seller.pk, timeout=30)
    browser.get(f"{stack.url}/admin/ledger/deposit/{deposit.pk}/change/")
    assert "approved" in browser.find_element(By.CSS_SELECTOR, ".field-status").text.lower()
    browser.save_screenshot(str(ARTIFACTS / "3-admin-deposit-approved.png"))
    assert Deposit.objects.get(pk=deposit.pk).status == Deposit.Status.APPROVED

    assert balance_cell().replace(",", "") == "50000"
    browser.save_screenshot(str(ARTIFACTS / "4-admin-seller-balance.png"))

    assert requests.get(f"{stack.flower_url}/workers", timeout=10).status_code == 401
    credentials = base64.b64encode(":".join(stack.flower_auth).encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}})
    deadline = time.monotonic() + 30
    while True:
        browser.get(f"{stack.flower_url}/workers")
        page = browser.page_source
        if (f"shards0@{HOST}" in page and f"shards1@{HOST}" in page) or time.monotonic() > deadline:
            break
        time.sleep(1)
    browser.save_screenshot(str(ARTIFACTS / "5-flower-workers.png"))
    assert f"shards0@{HOST}" in page and f"shards1@{HOST}" in page, page[:3000]

    # Each worker's own page: its pool, the queues it consumes and the tasks it registered, all
    # from the worker's replies to Flower's `inspect` (stats, active_queues, registered).
    shard_queues = set()
    for name, queue in WORKER_PAGES.items():
        queues, tasks = _flower_worker_page(browser, stack, name)
        assert queue is None or queue in queues, (name, queues)
        assert {"ledger.settle_shard", "ledger.fulfil", "ledger.import_batch"} <= tasks, (name, tasks)
        if name.startswith("shards"):
            assert "ledger.sweep" in queues, (name, queues)
            shard_queues |= {q for q in queues if q.startswith("ledger.shard.")}
    assert shard_queues == {f"ledger.shard.{k}" for k in range(settings.LEDGER_SHARDS)}, shard_queues
    assert_ledger_audit()


# Every worker `runstack` starts (LEDGER_WORKER_PROCESSES=2 here) and a queue its page must list
# (the shard workers' shard queues are checked together: every shard on one of the two pages).
WORKER_PAGES = {
    "shards0": "ledger.default",
    "shards1": None,
    "imports": "ledger.imports",
    "webhooks": "ledger.webhooks",
    "fulfil": "ledger.fulfil",
}


def _flower_worker_page(browser, stack: Stack, name: str) -> tuple[set[str], set[str]]:
    """Flower's /worker/<name>@<host>: its Queues tab (active_queues) and Limits tab (one row per
    registered task), each screenshotted. Flower inspects a worker it has no replies from while
    the page loads (404 "Unable to get stats" when the worker does not answer `stats`), so the
    page is loaded again until it lists the worker's queues."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = f"{stack.flower_url}/worker/{name}@{HOST}"
    deadline = time.monotonic() + 45
    while True:
        browser.get(url)
        rows = browser.find_elements(By.CSS_SELECTOR, "#worker-queues tr")
        if rows or time.monotonic() > deadline:
            break
        time.sleep(1)
    if not rows:
        browser.save_screenshot(str(ARTIFACTS / f"5-flower-worker-{name}-missing.png"))
        page = browser.find_element(By.TAG_NAME, "body").text
        errors = [line for line in stack.log.read_text(errors="replace").splitlines() if "ERROR" in line]
        pytest.fail(f"Flower's page of {name} lists no queues:\n{page[:2000]}\n" + "\n".join(errors[-20:]))
    assert re.search(r"Worker PID\s+\d+", browser.find_element(By.ID, "tab-pool").text), "no pool on the page"

    def tab(tab_id: str, cells: str) -> set[str]:
        browser.find_element(By.ID, f"worker-tab-{tab_id}").click()
        WebDriverWait(browser, 10).until(
            lambda driver: driver.find_element(By.ID, f"tab-{tab_id}").is_displayed(), f"tab {tab_id} not shown"
        )
        browser.save_screenshot(str(ARTIFACTS / f"5-flower-worker-{name}-{tab_id}.png"))
        return {cell.text.strip() for cell in browser.find_elements(By.CSS_SELECTOR, cells)}

    return tab("queues", "#worker-queues tr > td:first-child"), tab("limits", "#limits-table tr > td:first-child")


def _requested_urls(browser) -> list[str]:
    """The URLs the browser asked for since the last call (Chrome's performance log)."""
    import json

    messages = (json.loads(entry["message"])["message"] for entry in browser.get_log("performance"))
    return [m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"]


def test_api_docs_pages_render_the_operations_offline(stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{stack.url}/api/v1/docs/")
    WebDriverWait(browser, 30).until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= 25, "Swagger UI rendered no operations"
    )
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/api/v1/charges/", "/api/v1/auth/token/", "/api/v1/charge-batches/"} <= paths, paths
    browser.save_screenshot(str(ARTIFACTS / "6-swagger-ui.png"))
    swagger_requests = _requested_urls(browser)

    browser.get(f"{stack.url}/api/v1/redoc/")
    WebDriverWait(browser, 30).until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, '[data-section-id^="operation/"]')) >= 25,
        "ReDoc rendered no operations",
    )
    assert browser.find_elements(By.CSS_SELECTOR, '[data-section-id="operation/charges_create"]')
    browser.save_screenshot(str(ARTIFACTS / "7-redoc.png"))

    requested = swagger_requests + _requested_urls(browser)
    assert f"{stack.url}/api/v1/schema/" in requested and any(
        "/static/drf_spectacular_sidecar/" in u for u in requested
    )
    elsewhere = [url for url in requested if url.startswith(("http:", "https:")) and not url.startswith(stack.url)]
    # Except ReDoc's "API docs by Redocly" logo, which its bundle always asks its CDN for (an
    # image that hides itself when it fails, as it did here): nothing the page needs.
    elsewhere = [url for url in elsewhere if url != "https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert not elsewhere, f"the docs pages asked another host for {elsewhere}"


def test_ctrl_c_stops_every_process_of_the_stack(stack):
    children = psutil.Process(stack.process.pid).children(recursive=True)
    commands = [" ".join(child.cmdline()) for child in children if child.is_running()]
    for expected in ("gunicorn", "worker", "beat", "flower"):
        assert any(expected in command for command in commands), (expected, commands)

    os.killpg(stack.process.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends to the foreground group
    assert stack.process.wait(timeout=30) == 130, stack.tail()
    gone, alive = psutil.wait_procs(children, timeout=10)
    leftovers = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not leftovers, [(p.pid, " ".join(p.cmdline())) for p in leftovers]
    assert not {f"shards0@{HOST}", f"shards1@{HOST}"} & set(live_workers()), "workers did not withdraw their heartbeat"
    assert "SIGINT received" in stack.tail()
    if shutil.which("pgrep"):
        assert subprocess.run(["pgrep", "-s", str(stack.process.pid)], capture_output=True).stdout == b""


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own, so the fresh stack's workers cannot take wake-ups meant
    for the test database's sellers (they would find no such seller and drop them)."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port(5600, 5699)
    process = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def test_runstack_creates_and_migrates_a_missing_database(private_redis, tmp_path):
    import psycopg2
    from django.db import connection

    db = connection.settings_dict
    name = f"ledger_ops_fresh_{os.getpid()}"
    admin_dsn = dict(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None, dbname="postgres"
    )
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{name}"
    port, flower_port = free_port(8300, 8399), free_port(5600, 5699)
    env = subprocess_env(
        {
            "DATABASE_URL": url,
            "REDIS_URL": private_redis,
            "PORT": str(port),
            "FLOWER_PORT": str(flower_port),
            "WEB_WORKERS": "1",
            "LEDGER_WORKER_PROCESSES": "1",
            "BEAT_SCHEDULE_DIR": str(tmp_path),
            "FLOWER_BASIC_AUTH": f"ops:{secrets.token_urlsafe(16)}",
        }
    )
    log = tmp_path / "runstack.log"
    process = None
    try:
        process = _start_runstack(env, log)
        fresh = Stack(process, f"http://127.0.0.1:{port}", "", ("", ""), "", log)
        _wait(lambda: _ready(fresh), 120, "ready never answered 200", fresh)
        text = log.read_text()
        assert f"created database {name}" in text and "Applying ledger.0001_initial... OK" in text
        assert text.index("Applying ledger.0001_initial") < text.index("web started")
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        conn = psycopg2.connect(**admin_dsn)
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
