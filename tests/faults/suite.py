"""One seeded run of the fault suite: load from retrying clients, a sequence of faults drawn from
the seed, then the checks and the measurements (5xx and recovery time per fault)."""

from __future__ import annotations

import functools
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from celery import Celery
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import close_old_connections
from django.db.models import Sum
from django.utils import timezone

from catalog.models import ProductRoute
from devstack.house_catalog import route_house_products
from ledger.fulfilment import identity
from ledger.models import Account, Charge, ChargeRouteMove, Deposit, Entry, Installation, ProviderConflict
from ledger.provider_account.close import close_day
from providers.dtone import DTOneProvider
from tests.factories import PASSWORD, make_admin, make_seller
from tests.faults.load import ChargeClient
from tests.faults.stack import (
    BACKUP,
    BACKUP_BALANCE,
    PRIMARY,
    PROVIDER_OPTIONS,
    WORKER_READY,
    FaultStack,
    terminate_database_backends,
)
from tests.support import assert_ledger_audit, wait_settled

FUNDS = 10_000_000
DECLINE_RATE = 0.02
SINGLE_FAULTS = (
    "shard_worker_sigkill",
    "redis_restart_empty",
    "database_backends_terminated",
    "gunicorn_worker_sigkill",
    "gunicorn_master_sigkill",
    "beat_sigkill",
    "duplicate_and_reordered_wakeups",
)
# The provider's own faults: the fulfilment's. A provider blip must cost no sale the provider did
# not refuse, and every charge must be final within PROVIDER_RECOVERY_LIMIT of its coming back.
PROVIDER_FAULTS = (
    "provider_down",
    "provider_slow",
    "provider_killed_and_restarted",
    "provider_answers_dropped",
    "provider_stale_connections",
    "provider_reversals",
    "provider_late_successes",
    "provider_failover",
    "provider_insufficient_balance",
)
ALL_FAULTS = (*SINGLE_FAULTS, *PROVIDER_FAULTS, "everything_at_once")


@dataclass
class Fault:
    kind: str
    started: float  # wall clock
    back: float  # when every killed process was back (or the fault's end)
    notes: dict = field(default_factory=dict)
    server_errors: int = 0  # 5xx other than 503 and outcome_unknown
    outcome_unknown: int = 0  # 500 `outcome_unknown`: a write without a key lost mid-way; these clients send keys
    unavailable: int = 0  # 503, each with Retry-After
    no_answer: int = 0  # connection refused or reset
    recovery: float | None = None  # seconds after `back` until every charge accepted meanwhile settled
    # A provider fault: seconds after the provider was healthy again until every charge accepted
    # before then was final (None: not a provider fault).
    final_after_healthy: float | None = None


@dataclass
class Run:
    seed: int
    faults: list[Fault]
    charges: int
    approvals: list[int]


@functools.cache
def _production_hash() -> str:
    """PASSWORD hashed as production does (a second of PBKDF2 each time): computed once for every
    user the fault tests log in as, each of whom has that password."""
    hasher = PBKDF2PasswordHasher()
    return hasher.encode(PASSWORD, hasher.salt())


def _with_production_hash(user):
    """The suite's settings hash with MD5 for speed, which production does not accept."""
    user.password = _production_hash()
    user.save(update_fields=["password"])
    return user


def _login(base_url: str, username: str) -> str:
    response = requests.post(
        f"{base_url}/api/v1/auth/token/", json={"username": username, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()["access"]


class Scenario:
    def __init__(self, stack: FaultStack, seed: int, *, sellers: int = 4, pause: float = 0.02):
        self.stack, self.seed, self.rng = stack, seed, random.Random(seed)
        self.admin = _with_production_hash(make_admin())
        self.admin_token = _login(stack.url, self.admin.username)
        self.sellers = [make_seller() for _ in range(sellers)]
        for seller in self.sellers:
            _with_production_hash(seller.user)
        self.tokens = {s.pk: _login(stack.url, s.user.username) for s in self.sellers}
        self.approvals: list[int] = []
        self.late_successes: list[int] = []  # charges the provider completed after declining them
        self.pending: list[int] = []  # deposits filed to be approved during a broker outage
        for seller in self.sellers:
            self.pending.append(self._deposit(seller, FUNDS))
        for _ in self.sellers:
            self.approve_one()
        wait_settled(*(s.pk for s in self.sellers), timeout=60)
        for seller in self.sellers:
            self.pending.append(self._deposit(seller, 1_000))
        self.stop = threading.Event()
        self.clients = [
            ChargeClient(stack.url, self.tokens[s.pk], s.pk, f"seed{seed}-s{s.pk}", pause, self.stop)
            for s in self.sellers
        ]
        # Not the current app: the test process's own wake-ups must keep going to its own broker.
        self.broker = Celery(broker=stack.redis.url, set_as_current=False)
        if master := stack.redis.env.get("REDIS_SENTINEL_MASTER"):  # a Sentinel-managed pair
            self.broker.conf.broker_transport_options = {"master_name": master}

    def _deposit(self, seller, amount: int) -> int:
        response = requests.post(
            f"{self.stack.url}/api/v1/deposits/",
            json={"amount": amount},
            headers={"Authorization": f"Bearer {self.tokens[seller.pk]}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def approve_one(self) -> None:
        deposit_id = self.pending.pop(0)
        response = requests.post(
            f"{self.stack.url}/api/v1/deposits/{deposit_id}/approve/",
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=30,
        )
        self.approvals.append(response.status_code)

    # --- faults ---------------------------------------------------------------------------
    def shard_worker_sigkill(self, fault: Fault) -> None:
        victim = self.rng.choice(self.stack.workers)
        fault.notes["process"] = victim.name
        victim.kill()
        time.sleep(self.rng.uniform(0.3, 2.0))
        victim.start(ready_marker=WORKER_READY)

    def redis_restart_empty(self, fault: Fault) -> None:
        self.stack.redis.kill()
        outage = self.rng.uniform(1.0, 3.0)
        time.sleep(outage / 2)
        self.approve_one()  # an admin's approval while the broker is away
        time.sleep(outage / 2)
        self.stack.redis.start()
        fault.notes["outage_s"] = round(outage, 2)

    def database_backends_terminated(self, fault: Fault) -> None:
        fault.notes["terminated"] = terminate_database_backends()
        time.sleep(self.rng.uniform(0.1, 0.5))
        fault.notes["terminated"] += terminate_database_backends()

    def gunicorn_worker_sigkill(self, fault: Fault) -> None:
        self.stack.kill_web_worker(self.rng.randrange(8))

    def gunicorn_master_sigkill(self, fault: Fault) -> None:
        self.stack.web.kill()
        time.sleep(self.rng.uniform(0.2, 1.0))
        self.stack.start_web()

    def beat_sigkill(self, fault: Fault) -> None:
        self.stack.beat.kill()
        time.sleep(self.rng.uniform(0.3, 1.0))
        self.stack.beat.start(ready_marker="beat: Starting")

    def duplicate_and_reordered_wakeups(self, fault: Fault) -> None:
        tasks = []
        for seller in self.sellers:
            tasks += [("ledger.settle_seller", {"seller_id": seller.pk})] * 40
        tasks += [("ledger.settle_shard", {"shard": k}) for k in range(settings.LEDGER_SHARDS)] * 20
        self.rng.shuffle(tasks)
        for name, kwargs in tasks:
            queue = f"ledger.shard.{kwargs.get('shard', kwargs.get('seller_id', 0)) % settings.LEDGER_SHARDS}"
            self.broker.send_task(name, kwargs=kwargs, queue=queue, ignore_result=True)
        fault.notes["published"] = len(tasks)

    def provider_down(self, fault: Fault) -> None:
        """Every request answered 503 before processing for 3.5 s (the breaker opens)."""
        self.stack.sandbox.configure(down=True)
        time.sleep(3.5)
        self.stack.sandbox.configure(down=False)
        self._provider_healthy(fault)

    def provider_slow(self, fault: Fault) -> None:
        """Answers after 3 s, past our read timeout: every send and lookup times out meanwhile
        (unknown outcomes), yet the provider processes each request."""
        self.stack.sandbox.configure(latency_ms=3000)
        time.sleep(self.rng.uniform(3.0, 5.0))
        self.stack.sandbox.configure(latency_ms=PROVIDER_OPTIONS["latency_ms"])
        self._provider_healthy(fault)  # requests that came in meanwhile still take their 3 s

    def provider_killed_and_restarted(self, fault: Fault) -> None:
        """SIGKILLed with requests in flight (processed or not, their answers lost), restarted with
        its record."""
        self.stack.sandbox.kill()
        time.sleep(self.rng.uniform(1.0, 3.0))
        self.stack.sandbox.start()
        self.stack.sandbox.configure(decline_rate=DECLINE_RATE)  # what it started with is the command line's
        self._provider_healthy(fault)

    def provider_answers_dropped(self, fault: Fault) -> None:
        """A third of the top-ups processed, then their connection closed without an answer."""
        before = self.stack.sandbox.stats()["dropped"]
        self.stack.sandbox.configure(drop_rate=0.3)
        time.sleep(3.0)
        self.stack.sandbox.configure(drop_rate=PROVIDER_OPTIONS["drop_rate"])
        fault.notes["dropped"] = self.stack.sandbox.stats()["dropped"] - before
        self._provider_healthy(fault)

    def provider_stale_connections(self, fault: Fault) -> None:
        """Half the requests arriving on a reused keep-alive connection met by the connection
        closing, unread: what a provider closing idle connections does to a request sent just then."""
        before = self.stack.sandbox.stats()["stale_closed"]
        self.stack.sandbox.configure(stale_rate=0.5)
        time.sleep(3.0)
        self.stack.sandbox.configure(stale_rate=PROVIDER_OPTIONS["stale_rate"])
        fault.notes["stale_closed"] = self.stack.sandbox.stats()["stale_closed"] - before
        self._provider_healthy(fault)

    def provider_reversals(self, fault: Fault) -> None:
        """A fifth of the top-ups completed for 3 s reversed a second later: their callbacks (and
        the checks' close, for any callback a killed web lost) refund the sellers."""
        before = self.stack.sandbox.stats()["transactions"].get("REVERSED", 0)
        self.stack.sandbox.configure(reverse_rate=0.2)
        time.sleep(3.0)
        self.stack.sandbox.configure(reverse_rate=PROVIDER_OPTIONS["reverse_rate"])
        time.sleep(PROVIDER_OPTIONS["reverse_seconds"] + 0.5)
        fault.notes["reversed"] = self.stack.sandbox.stats()["transactions"].get("REVERSED", 0) - before
        self._provider_healthy(fault)

    def provider_late_successes(self, fault: Fault) -> None:
        """The provider turns up to three of its declines into completions and calls back: each is
        a conflict for an admin, never a second outcome (settled in `check`)."""
        declined = Charge.objects.filter(
            seller__in=self.sellers, status="failed", failure_code="operator_declined"
        ).exclude(pk__in=self.late_successes)
        chosen = list(declined.order_by("id").values_list("id", "external_id")[:3])
        for charge_id, external_id in chosen:
            self.stack.sandbox.force_status(external_id, "COMPLETED", callback=True)
            self.late_successes.append(charge_id)
        fault.notes["late_successes"] = len(chosen)
        self._provider_healthy(fault)

    def provider_failover(self, fault: Fault) -> None:
        """Every product routed to the provider first and to the backup second, and the provider
        down (503 before processing) for 3.5 s: the charges it refuses move to the backup under new
        external ids, and once its breaker opens new charges go straight there. The routes are
        switched off again when it is back (charges moved stay at the backup)."""
        moves = ChargeRouteMove.objects.filter(charge__seller__in=self.sellers)
        moved_before = moves.count()
        routes = route_house_products(PRIMARY, BACKUP, dvs=[BACKUP])
        self.stack.sandbox.configure(down=True)
        time.sleep(3.5)
        self.stack.sandbox.configure(down=False)
        ProductRoute.objects.filter(pk__in=routes).update(enabled=False)
        fault.notes["moved"] = moves.count() - moved_before
        self._provider_healthy(fault)
        fault.notes["at_backup"] = Charge.objects.filter(seller__in=self.sellers, provider=BACKUP).count()

    def provider_insufficient_balance(self, fault: Fault) -> None:
        """Every product routed to the backup first and to the provider second, and our balance at
        the backup gone for 3 s: it refuses the top-ups (insufficient balance, nothing recorded),
        they move to the provider under new external ids, and routing skips the backup until its
        polled float is funded again (PROVIDER_FLOAT_INTERVAL is 1 s here)."""
        moves = ChargeRouteMove.objects.filter(charge__seller__in=self.sellers, reason="insufficient_balance")
        moved_before = moves.count()
        routes = route_house_products(BACKUP, PRIMARY, dvs=[BACKUP])
        self.stack.backup.set_balance(0)
        time.sleep(3.0)
        ProductRoute.objects.filter(pk__in=routes).update(enabled=False)
        self.stack.backup.set_balance(BACKUP_BALANCE)
        fault.notes["moved"] = moves.count() - moved_before
        self._provider_healthy(fault)

    def _provider_healthy(self, fault: Fault, *, limit: float = 60.0) -> None:
        """The provider answers normally again from now (the fault's `back`): wait until every
        charge accepted before now is final, and note how long that took."""
        fault.back = time.time()
        healthy = timezone.now()
        waiting = Charge.objects.filter(seller__in=self.sellers, created_at__lt=healthy).exclude(
            stage=Charge.Stage.DONE
        )
        close_old_connections()
        while waiting.exists() and time.time() - fault.back < limit:
            time.sleep(0.1)
        fault.final_after_healthy = round(time.time() - fault.back, 2)
        fault.notes["still_open"] = waiting.count()

    def everything_at_once(self, fault: Fault) -> None:
        worker = self.rng.choice(self.stack.workers)
        worker.kill()
        self.stack.redis.kill()
        terminate_database_backends()
        self.stack.kill_web_worker(self.rng.randrange(8))
        time.sleep(self.rng.uniform(0.5, 1.5))
        self.stack.redis.start()
        worker.start(ready_marker=WORKER_READY)

    # --- the run --------------------------------------------------------------------------
    def run(self, kinds: tuple[str, ...], *, quiet: tuple[float, float] = (2.0, 3.5)) -> Run:
        order = list(kinds)
        self.rng.shuffle(order)
        # A share of the top-ups declined: refusals the checks must find on the provider's record.
        self.stack.sandbox.configure(decline_rate=DECLINE_RATE)
        for client in self.clients:
            client.start()
        faults = []
        try:
            time.sleep(self.rng.uniform(*quiet))
            for kind in order:
                fault = Fault(kind, time.time(), 0.0)
                getattr(self, kind)(fault)
                fault.back = fault.back or time.time()
                faults.append(fault)
                time.sleep(self.rng.uniform(*quiet))
        finally:
            self.stop.set()
            for client in self.clients:
                client.join(timeout=90)
            self.stack.sandbox.configure(decline_rate=PROVIDER_OPTIONS["decline_rate"])
        close_old_connections()
        seller_ids = [s.pk for s in self.sellers]
        wait_settled(*seller_ids, timeout=120)
        self._measure(faults)
        return Run(self.seed, faults, sum(len(c.log.accepted) for c in self.clients), self.approvals)

    def _measure(self, faults: list[Fault]) -> None:
        outcomes = [o for client in self.clients for o in client.log.outcomes]
        ends = [f.started for f in faults[1:]] + [float("inf")]
        charges = [
            (created.timestamp(), settled.timestamp(), charge_id)
            for created, settled, charge_id in Charge.objects.filter(seller__in=self.sellers).values_list(
                "created_at", "settled_at", "id"
            )
        ]
        for fault, next_start in zip(faults, ends, strict=True):
            window = [o for o in outcomes if fault.started <= o.at < min(next_start, fault.back + 5)]
            errors = [o for o in window if o.status is not None and o.status >= 500 and o.status != 503]
            fault.outcome_unknown = sum(1 for o in errors if o.code == "outcome_unknown")
            fault.server_errors = len(errors) - fault.outcome_unknown
            fault.unavailable = sum(1 for o in window if o.status == 503)
            fault.no_answer = sum(1 for o in window if o.status is None)
            # How long after the later of its acceptance and the fault's end each charge settled,
            # for the charges this fault was the last to start before their settlement.
            late = [
                (settled - max(created, fault.back), charge_id)
                for created, settled, charge_id in charges
                if fault.started <= settled < next_start
            ]
            worst = max(late, default=(0.0, None))
            fault.recovery = round(worst[0], 2)
            fault.notes["latest_charge"] = worst[1]

    # --- the checks -----------------------------------------------------------------------
    def check(self) -> None:
        """Every accepted key is exactly one charge (the one it answered), balances and entries
        exact, chains gapless and the audit clean (ledger_audit), nothing left waiting."""
        for client in self.clients:
            log = client.log
            assert log.mismatched == [], f"replayed keys answered another charge: {log.mismatched[:5]}"
            rows = dict(Charge.objects.filter(seller_id=log.seller_id).values_list("idempotency_key", "id"))
            assert set(rows) <= set(log.amounts), "a charge under a key no client sent"
            for key, charge_id in log.accepted.items():
                assert rows.get(key) == charge_id, f"{key}: answered {charge_id}, recorded {rows.get(key)}"
        self._reversals_by_the_close()
        self._settle_late_successes()
        for seller in self.sellers:
            deposits = Deposit.objects.filter(seller=seller, status="approved").aggregate(s=Sum("amount"))["s"] or 0
            succeeded = Charge.objects.filter(seller=seller, status__in=Charge.POSTED_STATUSES)
            spent = succeeded.aggregate(s=Sum("amount"))["s"] or 0
            refunds = Entry.objects.filter(seller=seller, kind__in=("refund", "adjustment"))
            assert Account.objects.get(seller=seller).balance == deposits - spent + (
                refunds.aggregate(s=Sum("amount"))["s"] or 0
            )
            # Each charge held at most once; a hold stays only on a success, else its release follows
            # (a charge the provider did not top up in time fails after its hold, under load too).
            holds = Entry.objects.filter(seller=seller, kind="charge")
            releases = Entry.objects.filter(seller=seller, kind="release")
            assert holds.count() == holds.values("charge_id").distinct().count()
            assert holds.count() == succeeded.count() + releases.count()
            assert not releases.exclude(charge__status="failed").exists()
            # One refund per reversed charge, of its price, and none elsewhere.
            reversed_ = Charge.objects.filter(seller=seller, status="reversed")
            refunded = Entry.objects.filter(seller=seller, kind="refund")
            assert sorted(refunded.values_list("charge_id", "amount")) == sorted(reversed_.values_list("id", "amount"))
        self._check_against_the_providers_record()
        assert not Charge.objects.filter(seller__in=self.sellers, status="queued").exists()
        assert not Deposit.objects.filter(seller__in=self.sellers, status="approving").exists()
        assert all(status in (200, 202) for status in self.approvals), self.approvals
        deadline = time.monotonic() + 60
        while self.stack.broker_depth():  # duplicate wake-ups drain: each finds nothing to do
            assert time.monotonic() < deadline, f"{self.stack.broker_depth()} messages still queued"
            time.sleep(0.5)
        assert_ledger_audit()

    def _check_against_the_providers_record(self) -> None:
        """Each provider's record equals the ledger: each succeeded charge exactly one completed
        top-up at the provider it was routed to, no completed top-up without a succeeded charge,
        none under an external id a charge left behind when it moved to another provider, and no
        charge failed that the provider did not refuse (its record has the charge's transaction,
        declined for the same reason)."""
        charges = Charge.objects.filter(seller__in=self.sellers)
        records = {PRIMARY: self.stack.sandbox.transactions(), BACKUP: self.stack.backup.transactions()}
        at = dict(charges.exclude(external_id=None).values_list("external_id", "provider"))
        record = {
            t["external_id"]: t
            for name, transactions in records.items()
            for t in transactions
            if t["external_id"] in at and (at[t["external_id"]] or PRIMARY) == name
        }
        sent_as = dict(charges.exclude(external_id=None).values_list("external_id", "id"))
        late = set(self.late_successes)
        left_behind = set(
            ChargeRouteMove.objects.filter(charge__seller__in=self.sellers)
            .exclude(external_id=None)
            .values_list("external_id", flat=True)
        )
        elsewhere = [
            t
            for name, transactions in records.items()
            for t in transactions
            if t["status"] == "COMPLETED"
            and (
                t["external_id"] in left_behind
                or (t["external_id"] in at and (at[t["external_id"]] or PRIMARY) != name)
            )
        ]
        assert elsewhere == [], f"top-ups under ids no charge is at there: {elsewhere[:5]}"
        completed = {sent_as[i] for i, t in record.items() if t["status"] == "COMPLETED"}
        assert completed - late == set(charges.filter(status="succeeded").values_list("id", flat=True))
        # The provider's reversals are ours: each one of a charge that had succeeded refunded (by its
        # callback, or the close); one that came before its success reached us failed the charge
        # (nothing was delivered), its hold released.
        reversed_there = {sent_as[i] for i, t in record.items() if t["status"] == "REVERSED"}
        refunded = set(charges.filter(status="reversed").values_list("id", flat=True))
        assert refunded <= reversed_there
        failed_so = set(charges.filter(pk__in=reversed_there - refunded).values_list("failure_code", flat=True))
        assert failed_so <= {Charge.FailureCode.PROVIDER_REJECTED}, failed_so
        # A completion after a decline is a conflict an admin settled, the charge still failed.
        assert set(charges.filter(pk__in=late, status="failed").values_list("id", flat=True)) == late
        assert completed & late == late
        unfunded = Charge.FailureCode.INSUFFICIENT_FUNDS
        failed = charges.filter(status="failed").exclude(failure_code=unfunded).exclude(pk__in=late)
        for charge_id, external_id, code in failed.values_list("id", "external_id", "failure_code"):
            refused = record.get(external_id)
            if refused is not None and refused["status"] == "REVERSED" and code == Charge.FailureCode.PROVIDER_REJECTED:
                continue  # reversed before its success reached us: nothing delivered
            assert refused is not None and refused["status"] == "DECLINED", (
                f"charge {charge_id} failed {code}, but the provider has {refused} for it"
            )
            assert refused["failure_code"] == code, f"charge {charge_id} failed {code}, refused {refused}"

    def _reversals_by_the_close(self) -> None:
        """The daily close against the stack's provider, run here: any reversal whose callbacks a
        killed web lost is recorded through the same lifecycle function, and its seller woken on
        the stack's broker. Then wait until every reversal is refunded."""
        charge = Charge.objects.filter(seller__in=self.sellers).exclude(external_id=None).first()
        token = charge.external_id[len(settings.PROVIDER_EXTERNAL_ID_PREFIX) :].rsplit("-", 1)[0]
        Installation.objects.update_or_create(id=1, defaults={"token": token})
        identity.installation_token.cache_clear()
        provider = DTOneProvider(base_url=self.stack.sandbox.url, timeout=(5.0, 30.0))
        close_day(provider, timezone.now().date())
        for seller in self.sellers:
            self.broker.send_task(
                "ledger.settle_seller",
                kwargs={"seller_id": seller.pk},
                queue=f"ledger.shard.{seller.pk % settings.LEDGER_SHARDS}",
                ignore_result=True,
            )
        waiting = Charge.objects.filter(seller__in=self.sellers, status="succeeded", reversal_reason__isnull=False)
        deadline = time.monotonic() + 60
        while waiting.exists():
            assert time.monotonic() < deadline, f"reversals not refunded: {list(waiting.values_list('id'))}"
            time.sleep(0.2)

    def _settle_late_successes(self) -> None:
        """Each late success is listed for an admin; the first is debited from its seller, the
        others booked as losses; settling again changes nothing."""
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        listed = requests.get(f"{self.stack.url}/api/v1/ops/conflicts/?status=open", headers=headers, timeout=30)
        assert listed.status_code == 200, listed.text
        assert {c["charge"] for c in listed.json()["results"]} == set(self.late_successes)
        for n, charge_id in enumerate(self.late_successes):
            action = "debit" if n == 0 else "book_loss"
            url = f"{self.stack.url}/api/v1/ops/conflicts/{charge_id}/settle/"
            for _ in range(2):
                answer = requests.post(url, json={"action": action}, headers=headers, timeout=30)
                assert answer.status_code in (200, 202), answer.text
        done = ProviderConflict.objects.filter(charge_id__in=self.late_successes, status__in=("debited", "loss_booked"))
        deadline = time.monotonic() + 60
        while done.count() < len(self.late_successes):
            assert time.monotonic() < deadline, "late successes not settled"
            time.sleep(0.2)


def report(runs: list[Run]) -> str:
    """Markdown table, per fault kind over every run: 5xx, 503s, unanswered requests, recovery."""
    kinds: dict[str, list[Fault]] = {}
    for run in runs:
        for fault in run.faults:
            kinds.setdefault(fault.kind, []).append(fault)
    lines = [
        f"{len(runs)} seeded runs, {sum(r.charges for r in runs)} charges accepted, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        "| fault | runs | 5xx (not 503) | 500 outcome_unknown | 503 + Retry-After | no answer | recovery max (s) | recovery median (s) | final after the provider's return, max (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind in ALL_FAULTS:
        faults = kinds.get(kind, [])
        if not faults:
            continue
        recoveries = sorted(f.recovery for f in faults)
        lines.append(
            f"| {kind} | {len(faults)} | {sum(f.server_errors for f in faults)} "
            f"| {sum(f.outcome_unknown for f in faults)} | {sum(f.unavailable for f in faults)} "
            f"| {sum(f.no_answer for f in faults)} | {recoveries[-1]:.2f} | {recoveries[len(recoveries) // 2]:.2f} "
            f"| {_worst_final(faults)} |"
        )
    return "\n".join(lines)


def _worst_final(faults: list[Fault]) -> str:
    finals = [f.final_after_healthy for f in faults if f.final_after_healthy is not None]
    return f"{max(finals):.2f}" if finals else ""
