"""pytest-celery runs brokers and workers in Docker containers. These machines have the Docker
client but no engine, so the suite here skips with the reason instead of failing; the main suite
covers the same ground with real worker processes (tests/core)."""

import shutil
import subprocess

import pytest


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pytest_collection_modifyitems(config, items):
    if _docker_engine_answers():
        return
    skip = pytest.mark.skip(reason="pytest-celery needs a Docker engine and `docker info` found none")
    for item in items:
        if "tests/docker/" in str(item.fspath):
            item.add_marker(skip)
