"""Shard assignment, the first-run helper and the production refusals: commands run as users run them."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from ops.flower import flower_credentials_problem
from workers.assignment import parse_shard_groups, shard_assignment

ROOT = Path(__file__).resolve().parents[2]


def test_explicit_shard_groups_are_parsed_with_ranges():
    assert parse_shard_groups("0,1;2-3", 4) == [[0, 1], [2, 3]]
    assert parse_shard_groups(" 3 ; 0-2 ", 4) == [[3], [0, 1, 2]]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("0,1;1,2,3", "shard 1 to processes 0 and 1"),
        ("0,1;2", "leaves shards [3]"),
        ("0-4", "names shard 4"),
        ("0,1;;2,3", "empty process group"),
        ("0,x;1,2,3", "not a shard number"),
    ],
)
def test_shard_groups_that_do_not_cover_every_shard_once_are_refused(spec, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_shard_groups(spec, 4)


def test_round_robin_assignment_covers_every_shard_once():
    groups = shard_assignment(8, 3)
    assert sorted(k for g in groups for k in g) == list(range(8))
    assert shard_assignment(2, 5) == [[0], [1]]


def test_flower_credentials_must_be_user_and_a_real_password():
    assert flower_credentials_problem(None) == "FLOWER_BASIC_AUTH is not set"
    assert "user:password" in flower_credentials_problem("admin")
    assert "shorter than 12" in flower_credentials_problem("admin:admin")
    assert flower_credentials_problem("admin:correct-horse-battery") is None


def _manage(*args, env_extra=None, cwd=ROOT, unset=()):
    dropped = ("FLOWER_BASIC_AUTH", "LEDGER_WORKER_SHARDS", *unset)
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "ALLOWED_HOSTS": "ledger.example",
    "SECRET_KEY": secrets.token_urlsafe(50),
}


def test_production_refuses_to_start_flower_without_credentials():
    result = _manage("runflower", "--port=5698", env_extra=PRODUCTION)
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH is not set" in result.stderr
    weak = _manage("runflower", "--port=5698", env_extra={**PRODUCTION, "FLOWER_BASIC_AUTH": "admin:admin"})
    assert weak.returncode != 0 and "shorter than 12" in weak.stderr


def test_production_refuses_a_missing_secret_key_and_hosts():
    no_secret = _manage("check", env_extra={**PRODUCTION, "SECRET_KEY": ""})
    assert no_secret.returncode != 0 and "SECRET_KEY must be set" in no_secret.stderr
    no_hosts = _manage("check", env_extra={**PRODUCTION, "ALLOWED_HOSTS": ""})
    assert no_hosts.returncode != 0 and "ALLOWED_HOSTS must be set" in no_hosts.stderr
    for address in ("DATABASE_URL", "REDIS_URL"):  # no localhost default on a host of its own
        missing = _manage("check", env_extra=PRODUCTION, unset=(address,))
        assert missing.returncode != 0 and f"{address} must be set" in missing.stderr
    ok = _manage("check", "--deploy", "--fail-level", "WARNING", env_extra=PRODUCTION)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_runstack_refuses_a_shard_configuration_that_leaves_a_shard_unconsumed():
    result = _manage("runstack", "--no-migrate", env_extra={"LEDGER_SHARDS": "4", "LEDGER_WORKER_SHARDS": "0,1;2"})
    assert result.returncode != 0
    assert "leaves shards [3] without a consumer" in result.stderr


def test_init_env_writes_fresh_secrets_and_never_overwrites(tmp_path):
    target = tmp_path / ".env"
    first = _manage("init_env", "--path", str(target))
    assert first.returncode == 0, first.stderr
    values = dict(line.split("=", 1) for line in target.read_text().splitlines() if "=" in line and line[0] != "#")
    assert len(values["SECRET_KEY"]) >= 50
    assert (
        values["FLOWER_BASIC_AUTH"].startswith("admin:")
        and flower_credentials_problem(values["FLOWER_BASIC_AUTH"]) is None
    )
    assert values["METRICS_TOKEN"] and values["POSTGRES_PASSWORD"] and values["REDIS_PASSWORD"]
    assert values["DATABASE_URL"]  # the rest is copied from .env.example
    assert oct(target.stat().st_mode & 0o777) == "0o600"

    target.write_text("SECRET_KEY=mine\n")
    second = _manage("init_env", "--path", str(target))
    assert second.returncode == 0 and "left unchanged" in second.stdout
    assert target.read_text() == "SECRET_KEY=mine\n"

    assert _manage("init_env", "--path", str(tmp_path / ".env2")).returncode == 0
    assert (
        dict(
            line.split("=", 1)
            for line in (tmp_path / ".env2").read_text().splitlines()
            if line.startswith("SECRET_KEY=")
        )["SECRET_KEY"]
        != values["SECRET_KEY"]
    )


def test_manage_check_refuses_a_shard_assignment_with_a_shard_consumed_twice():
    result = _manage("check", env_extra={"LEDGER_SHARDS": "4", "LEDGER_WORKER_SHARDS": "0,1;1,2,3"})
    assert result.returncode != 0
    assert "ledger.E001" in result.stderr and "gives shard 1 to processes 0 and 1" in result.stderr
    assert _manage("check", env_extra={"LEDGER_SHARDS": "4", "LEDGER_WORKER_SHARDS": "0,3;1-2"}).returncode == 0


def test_stacks_with_different_broker_key_prefixes_do_not_count_each_others_workers(settings):
    from workers import heartbeat

    client = heartbeat.broker_client()
    plain = dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {**plain, "global_keyprefix": "other-stack:"}
    try:
        heartbeat._announce(client, "ghost@elsewhere", ["ledger.shard.0"])
        assert heartbeat.live_workers(client)["ghost@elsewhere"] == ["ledger.shard.0"]
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = plain
        assert "ghost@elsewhere" not in heartbeat.live_workers(client)
    finally:
        client.delete("other-stack:ledger:ops:workers")
