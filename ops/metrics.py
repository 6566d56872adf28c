"""Prometheus metrics of the ledger, computed at scrape time from the broker and the database, so
every web process reports the same numbers and nothing is lost when a process restarts.

The one number that cannot be read back afterwards is settle throughput: the settle tasks add
what they applied to Redis counters (workers/progress.py), and Prometheus'
`rate(ledger_settled_intents_total[1m])` turns them into intents per second."""

from __future__ import annotations

import json

import redis
from django.db import connection
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ops.report import queue_report
from workers.broker import broker_client, ops_key
from workers.progress import SETTLE_RUNS_KEY, SETTLED_INTENTS_KEY


def _status_counts(table: str) -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT status, count(*) FROM {table} GROUP BY status")  # table is ours, not input
        return dict(cursor.fetchall())


def last_audit() -> dict | None:
    """The newest result of the periodic `ledger.audit` task (stored by django-celery-results)."""
    from django_celery_results.models import TaskResult

    result = (
        TaskResult.objects.filter(task_name="ledger.audit", status="SUCCESS")
        .order_by("-date_done")
        .only("result", "date_done")
        .first()
    )
    if result is None:
        return None
    try:
        outcome = json.loads(result.result)
    except (TypeError, ValueError):
        return None
    return {"ok": bool(outcome.get("ok")), "breaches": len(outcome.get("breaches", [])), "at": result.date_done}


class LedgerCollector:
    def collect(self):
        report = queue_report(oldest_limit=0)
        broker_up = report["broker"] == "ok"
        yield GaugeMetricFamily("ledger_broker_up", "1 if the Redis broker answered this scrape", value=int(broker_up))

        depth = GaugeMetricFamily("ledger_queue_depth", "Messages waiting in the queue", labels=["queue"])
        consumers = GaugeMetricFamily(
            "ledger_queue_consumers", "Live worker processes consuming the queue", labels=["queue"]
        )
        for row in [*report["queues"], *report["other_queues"]]:
            if broker_up:
                depth.add_metric([row["queue"]], row["depth"])
                consumers.add_metric([row["queue"]], row["consumers"])
        yield depth
        yield consumers

        shard_metrics = {
            "oldest": GaugeMetricFamily(
                "ledger_shard_oldest_waiting_intent_age_seconds",
                "Age of the shard's oldest queued charge or approving deposit (0 when none waits)",
                labels=["queue"],
            ),
            "sellers": GaugeMetricFamily(
                "ledger_shard_waiting_sellers", "Sellers of the shard with waiting intents", labels=["queue"]
            ),
            "since": GaugeMetricFamily(
                "ledger_shard_seconds_since_settle",
                "Seconds since the shard last settled intents (absent when unknown)",
                labels=["queue"],
            ),
            "stalled": GaugeMetricFamily(
                "ledger_shard_stalled",
                "1 if the shard's oldest waiting intent is older than LEDGER_STALL_AFTER and the shard "
                "settled nothing for as long",
                labels=["queue"],
            ),
        }
        for row in report["queues"]:
            labels = [row["queue"]]
            shard_metrics["oldest"].add_metric(labels, row["oldest_waiting_age_seconds"])
            shard_metrics["sellers"].add_metric(labels, row["waiting_sellers"])
            if row["seconds_since_settle"] is not None:
                shard_metrics["since"].add_metric(labels, row["seconds_since_settle"])
            shard_metrics["stalled"].add_metric(labels, int(row["stalled"]))
        yield from shard_metrics.values()
        yield GaugeMetricFamily(
            "ledger_oldest_waiting_intent_age_seconds",
            "Age of the oldest queued charge or approving deposit (0 when none waits)",
            value=max((row["oldest_waiting_age_seconds"] for row in report["queues"]), default=0.0),
        )

        charges = GaugeMetricFamily("ledger_charges", "Charges by status", labels=["status"])
        counts = _status_counts("ledger_charge")
        for status in ("queued", "succeeded", "failed", "reversed"):
            charges.add_metric([status], counts.get(status, 0))
        yield charges
        fulfilment = report["fulfilment"]
        holding = GaugeMetricFamily("ledger_charges_open", "Charges holding credit, by stage", labels=["stage"])
        for stage, count in fulfilment["charges"].items():
            holding.add_metric([stage], count)
        yield holding
        yield GaugeMetricFamily(
            "ledger_charges_resending",
            "Sent charges the provider had no record of, sent again under their external id, not answered yet",
            value=fulfilment["resending"],
        )
        yield GaugeMetricFamily(
            "ledger_charges_unknown_overdue",
            "Charges whose provider outcome is still unknown (or being resent) after PROVIDER_UNKNOWN_ALERT_AFTER",
            value=fulfilment["unknown_overdue"],
        )
        yield GaugeMetricFamily(
            "ledger_provider_mismatches",
            "Charges held because the provider answered about another transaction: page someone",
            value=fulfilment["provider_mismatches"],
        )
        yield GaugeMetricFamily(
            "ledger_provider_late_successes_open",
            "Top-ups the provider says it delivered for charges we failed, not settled by an admin: page someone",
            value=fulfilment["conflicts"]["late_successes_open"],
        )
        yield GaugeMetricFamily(
            "ledger_provider_late_success_debits_refused",
            "Open late successes whose debit the seller's balance did not cover",
            value=fulfilment["conflicts"]["debit_refused"],
        )
        breaker = GaugeMetricFamily(
            "ledger_provider_breaker_open",
            "1 while the provider's circuit breaker holds sends back (routing sends elsewhere meanwhile)",
            labels=["provider"],
        )
        for name, gate in fulfilment["gates"].items():
            breaker.add_metric([name], int(gate.get("state") == "open"))
        yield breaker
        deposits = GaugeMetricFamily("ledger_deposits", "Deposits by status", labels=["status"])
        counts = _status_counts("ledger_deposit")
        for status in ("pending", "approving", "approved", "rejected"):
            deposits.add_metric([status], counts.get(status, 0))
        yield deposits

        if broker_up:
            try:
                intents, runs = broker_client().mget(ops_key(SETTLED_INTENTS_KEY), ops_key(SETTLE_RUNS_KEY))
            except redis.RedisError:
                intents = runs = None
            if intents is not None or runs is not None:
                yield CounterMetricFamily(
                    "ledger_settled_intents",
                    "Intents (charges and deposits) settled by the shard workers",
                    value=int(intents or 0),
                )
                yield CounterMetricFamily(
                    "ledger_settle_runs", "settle_seller task runs that applied intents", value=int(runs or 0)
                )

        audit = last_audit()
        if audit is not None:
            yield GaugeMetricFamily(
                "ledger_audit_ok", "1 if the last periodic ledger audit found no breach", value=int(audit["ok"])
            )
            yield GaugeMetricFamily(
                "ledger_audit_breaches", "Breaches the last periodic ledger audit reported", value=audit["breaches"]
            )
            yield GaugeMetricFamily(
                "ledger_audit_last_run_timestamp_seconds", "When the last audit finished", value=audit["at"].timestamp()
            )
        yield from _replica_metrics(report["replica"])
        yield from _float_metrics(report["provider_floats"])


def _float_metrics(floats: list[dict]):
    """Our balance at each provider, and its alert state: alert on `ledger_provider_float_low == 1`
    (the account needs funding) and on `ledger_provider_float_ok == 0` (routing skips it)."""
    balance = GaugeMetricFamily(
        "ledger_provider_float",
        "Our available balance at the provider, smallest unit of its currency (last poll that answered)",
        labels=["provider", "currency"],
    )
    threshold = GaugeMetricFamily(
        "ledger_provider_float_low_threshold", "PROVIDER_FLOAT_LOW for the provider", labels=["provider", "currency"]
    )
    low = GaugeMetricFamily(
        "ledger_provider_float_low", "1 while the float is below its threshold", labels=["provider"]
    )
    ok = GaugeMetricFamily(
        "ledger_provider_float_ok", "1 if routing may send sales there (provider_float_ok)", labels=["provider"]
    )
    age = GaugeMetricFamily(
        "ledger_provider_float_poll_age_seconds", "Since the last poll that answered", labels=["provider"]
    )
    failing = GaugeMetricFamily(
        "ledger_provider_float_poll_failing", "1 while the last poll of the balance failed", labels=["provider"]
    )
    now = timezone.now()
    for row in floats:
        name = row["provider"]
        if row["available"] is not None:
            balance.add_metric([name, row["currency"]], row["available"])
            age.add_metric([name], (now - row["polled_at"]).total_seconds())
        if row["low_threshold"] is not None:
            threshold.add_metric([name, row["currency"]], row["low_threshold"])
        low.add_metric([name], int(row["low"]))
        ok.add_metric([name], int(row["ok"]))
        failing.add_metric([name], int(row["error"] is not None))
    yield from (balance, threshold, low, ok, age, failing)


def _replica_metrics(replica: dict | None):
    if replica is None:  # no DATABASE_REPLICA_URL
        return
    yield GaugeMetricFamily(
        "ledger_replica_up",
        "1 if the read replica answered and streams from the primary",
        value=int(replica["lag_seconds"] is not None),
    )
    if replica["lag_seconds"] is not None:
        yield GaugeMetricFamily(
            "ledger_replica_lag_seconds", "How far the read replica is behind the primary", value=replica["lag_seconds"]
        )
    yield GaugeMetricFamily(
        "ledger_replica_serving_reads",
        "1 while lists and the transaction export read the replica (0: on the primary)",
        value=int(replica["heavy_reads"] == "replica"),
    )


def render() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector())
    return generate_latest(registry)
