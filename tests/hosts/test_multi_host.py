"""The stack on six hosts (devstack/hosts/cluster.py): a client drives deposits, approvals, charges
and a charge list import through both web hosts; then a worker host is cut off, its shard group is
taken over by the standby on the other host, and everything accepted settles exactly once."""

import time

import pytest

from devstack.hosts.client import charge, create_seller, fund, login, next_phone
from devstack.hosts.cluster import ADMIN_PASSWORD, Cluster
from devstack.hosts.network import why_namespaces_unavailable
from devstack.postgres import why_unavailable as why_postgres_unavailable
from workers.assignment import shard_assignment

pytestmark = pytest.mark.workers
# The takeover target (docs/scaling.md), with the production lease of 5 s.
TAKEOVER_LIMIT = 10.0
UNFINISHED = "SELECT count(*) FROM ledger_charge WHERE status NOT IN ('succeeded', 'failed')"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_namespaces_unavailable() or why_postgres_unavailable()
    if reason:
        pytest.skip(reason)
    cluster = Cluster(tmp_path_factory.mktemp("hosts"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def _accepted(session, url) -> int:
    answer = charge(session, url)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def test_two_web_hosts_and_a_standby_that_takes_over_a_lost_worker_host(cluster):
    webs = [cluster.web_url("web1"), cluster.web_url("web2")]
    admins = [login(url, "admin", ADMIN_PASSWORD) for url in webs]
    sellers = []
    for n in range(4):  # ids 1..4: every shard, so both groups; each call on a web host in turn
        seller_id = create_seller(admins[n % 2], webs[n % 2], f"s{n}")
        sessions = [login(url, f"s{n}") for url in webs]
        fund(sessions[n % 2], webs[n % 2], admins[(n + 1) % 2], webs[(n + 1) % 2], 1000)
        sellers.append((seller_id, sessions))
    for i in range(40):
        _accepted(sellers[i % 4][1][i % 2], webs[i % 2])
    rows = "phone_number,amount\n" + "".join(f"{next_phone()},2\n" for _ in range(50))
    upload = sellers[0][1][1].post(f"{webs[1]}/api/v1/charge-batches/", files={"file": ("list.csv", rows)}, timeout=10)
    assert upload.status_code == 202, upload.text
    cluster.wait_sql("SELECT count(*) FROM ledger_charge WHERE status = 'succeeded'", 90, 60)
    cluster.wait_sql(UNFINISHED, 0, 30)

    # Host w1 goes: the worker of group 0, the standby of group 1, a fulfilment worker.
    groups = shard_assignment(4, 2)
    lost = [sessions for seller_id, sessions in sellers if seller_id % 4 in groups[0]]
    cluster.network.cut(cluster.hosts["w1"])
    cut_at = time.monotonic()
    accepted = [_accepted(sessions[i % 2], webs[i % 2]) for i in range(10) for sessions in lost]
    cluster.wait_reserved(accepted, timeout=TAKEOVER_LIMIT + 20)
    takeover = time.monotonic() - cut_at
    print(f"group 0 settled on host w2 {takeover:.1f} s after host w1 was cut off")
    assert takeover <= TAKEOVER_LIMIT

    cluster.wait_sql(UNFINISHED, 0, 30)
    total = 40 + 50 + len(accepted)
    assert cluster.sql("SELECT count(*), count(*) FILTER (WHERE status = 'succeeded') FROM ledger_charge")[0] == (
        total,
        total,
    )
    # Exactly once: one hold per charge, and every balance what its deposits and charges make it.
    assert cluster.sql("SELECT count(*), count(DISTINCT charge_id) FROM ledger_entry WHERE kind = 'charge'")[0] == (
        total,
        total,
    )
    balances = dict(cluster.sql("SELECT seller_id, balance FROM ledger_account"))
    spent = dict(cluster.sql("SELECT seller_id, sum(amount) FROM ledger_charge GROUP BY seller_id"))
    assert balances == {seller_id: 1000 - spent[seller_id] for seller_id, _ in sellers}
    assert "passed" in cluster.audit()
