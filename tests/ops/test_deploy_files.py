"""What can be checked of the container setup without a Docker engine: the compose file against the
Compose specification, the Dockerfile with hadolint, and that every command the compose file runs
exists in this project and agrees with the shard configuration."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands
from django.utils.module_loading import import_string

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: s for name, s in SERVICES.items() if "build" in s}


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed: run `make install` (it is pinned in requirements-dev.txt)")
    return str(path)


def test_compose_file_matches_the_compose_specification():
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_passes_hadolint():
    result = subprocess.run([_tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "-r requirements.txt" in text


def test_broker_and_database_have_healthchecks_volumes_and_safe_redis_settings():
    for name in ("postgres", "redis"):
        assert SERVICES[name]["healthcheck"]["test"], name
        assert SERVICES[name]["volumes"], name
        assert ":" in SERVICES[name]["image"] and not SERVICES[name]["image"].endswith(":latest")
    redis_args = " ".join(SERVICES["redis"]["command"])
    assert "--appendonly yes" in redis_args
    assert "--maxmemory-policy noeviction" in redis_args


def test_one_image_for_web_workers_beat_and_flower_with_health_checks():
    images = {s["image"] for s in APP_SERVICES.values()}
    assert len(images) == 1
    kinds = {name: " ".join(s["command"]) for name, s in APP_SERVICES.items()}
    assert any("gunicorn" in c for c in kinds.values())
    assert any("shardworker" in c for c in kinds.values())
    assert any(" beat" in c for c in kinds.values())
    assert any("runflower" in c for c in kinds.values())
    for name, service in APP_SERVICES.items():
        if name not in ("migrate", "beat"):
            assert service.get("healthcheck"), f"{name} has no health check"
    assert "/api/v1/ready/" in " ".join(SERVICES["web"]["healthcheck"]["test"])


def test_no_default_passwords_in_compose():
    text = (ROOT / "docker-compose.yml").read_text()
    for variable in ("SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH"):
        uses = re.findall(r"\$\{" + variable + r"([^}]*)\}", text)
        assert uses, variable
        assert all(use.startswith(":?") for use in uses), f"{variable} must be required, not defaulted: {uses}"


def _commands():
    """(service, argv) for every command and health check the compose file runs in our image."""
    for name, service in APP_SERVICES.items():
        yield name, service["command"]
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            yield f"{name} healthcheck", test[1:]


@pytest.mark.parametrize("service,argv", list(_commands()), ids=[n for n, _ in _commands()])
def test_every_command_the_compose_file_runs_exists(service, argv):
    if argv[:2] == ["python", "manage.py"]:
        assert argv[2] in get_commands(), f"{service}: manage.py has no command {argv[2]!r}"
        assert get_commands()[argv[2]] != "devstack", f"{service}: {argv[2]!r} is left out of the image (.dockerignore)"
    elif argv[0] == "celery":
        assert argv[1:3] == ["-A", "celery_app"]
        app = import_string("celery_app.app")
        assert argv[3] in ("worker", "beat", "flower", "inspect"), argv
        assert app.main == "ledger"
    elif argv[0] == "gunicorn":
        module, _, attr = argv[1].partition(":")
        assert callable(import_string(f"{module}.{attr}"))
    elif argv[:2] == ["python", "-c"]:
        compile(argv[2], service, "exec")
    elif argv[:3] == ["python", "-m", "provider_sandbox"]:
        from provider_sandbox.__main__ import parse_args

        parse_args(argv[3:])  # every option it is given exists
    else:
        pytest.fail(f"{service}: unknown command {argv}")


def test_compose_shard_workers_cover_every_shard_exactly_once():
    """worker-N services run `shardworker N`; together they must be exactly the configured groups."""
    env = APP_SERVICES["web"]["environment"]
    default = lambda value: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)  # noqa: E731
    shards, groups_spec = default(env["LEDGER_SHARDS"]), default(env["LEDGER_WORKER_SHARDS"])
    commands = [s["command"] for s in APP_SERVICES.values() if "shardworker" in s["command"]]
    indexes = sorted(int(c[3]) for c in commands if "--standby" not in c)
    standbys = sorted(int(c[3]) for c in commands if "--standby" in c)
    assert standbys == indexes, "every shard group has one standby"
    printed = []
    for index in indexes:
        result = subprocess.run(
            [sys.executable, "manage.py", "shardworker", str(index), "--print"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "LEDGER_SHARDS": shards, "LEDGER_WORKER_SHARDS": groups_spec},
        )
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout)
    queues = [q for out in printed for q in out.split(" -Q ")[1].split()[0].split(",") if q.startswith("ledger.shard.")]
    assert sorted(queues) == sorted(f"ledger.shard.{k}" for k in range(int(shards)))
    assert indexes == list(range(len(groups_spec.split(";"))))


# What the image runs (everything but the development launcher, the benchmark and the tests).
DEPLOYED = ("catalog", "config", "core", "ledger", "notifications", "ops", "provider_sandbox", "workers")


def _imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_deployed_code_never_imports_the_benchmark_or_the_development_launcher():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "devstack" in ignored and "tests" in ignored
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for package in DEPLOYED
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in _imported_modules(path)
        if module.split(".")[0] in ("bench", "devstack", "tests")
    ]
    assert not offenders, offenders
