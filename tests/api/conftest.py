import pytest

from core.throttling import _client


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    """Rate-limit counters live in the test Redis database and outlive a test (and a run, whose
    sellers get the same ids again): every test starts with none."""
    client = _client()
    keys = list(client.scan_iter("throttle:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def live_server_url(django_db_setup, tmp_path_factory):
    """gunicorn with 4 processes on the test database (see tests/api/live.py)."""
    from tests.api.live import LiveServer

    # Login limits stay on but high: every test logs in from 127.0.0.1.
    server = LiveServer(
        tmp_path_factory.mktemp("gunicorn"), processes=4, env={"LOGIN_THROTTLE_ADDRESS_RATE": "100000/15m"}
    ).start()
    yield server.url
    server.stop()
