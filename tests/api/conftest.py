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
