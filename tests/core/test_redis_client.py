"""core/redis_client.py: URLs read as kombu reads Celery's broker URL, and the pool each kind
gets. Against real sentinels and a failover: tests/broker/."""

import kombu
import pytest
import redis
from django.conf import settings
from kombu.utils.json import dumps, loads
from redis.sentinel import Sentinel, SentinelConnectionPool

from core import redis_client

URL = "sentinel://:s%40cret@10.0.0.1:26380/3;sentinel://10.0.0.2;sentinel://10.0.0.3:26390"


def test_a_sentinel_url_names_every_sentinel_and_the_masters_credentials_and_database():
    parsed = redis_client.parse_sentinel_url(URL)
    assert parsed.sentinels == [("10.0.0.1", 26380), ("10.0.0.2", 26379), ("10.0.0.3", 26390)]
    assert (parsed.db, parsed.username, parsed.password) == (3, None, "s@cret")


def test_the_sentinel_url_is_read_as_kombu_reads_it():
    """Celery's workers and our own clients must reach the same master and database."""
    connection = kombu.Connection(URL, transport_options={"master_name": "m"})
    assert connection.transport_cls == "sentinel"
    hosts = [kombu.Connection(alt) for alt in connection.alt]
    parsed = redis_client.parse_sentinel_url(URL)
    assert [(c.hostname, c.port or 26379) for c in hosts] == parsed.sentinels
    assert connection.password == parsed.password
    assert int(connection.virtual_host) == parsed.db


def test_a_sentinel_url_gets_a_pool_that_asks_the_sentinels_for_the_named_master():
    pool = redis_client.connection_pool(URL, master_name="ledger-a", sentinel_password="pw", socket_timeout=0.5)
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "ledger-a"
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "s@cret"
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    # The sentinels' own password and the caller's timeout, never the master's password.
    assert sentinel["password"] == "pw" and sentinel["socket_timeout"] == 0.5
    assert pool.sentinel_manager.sentinels[0].connection_pool.make_connection().retry.get_retries() == 0


def test_the_master_name_defaults_to_the_setting(settings):
    settings.REDIS_SENTINEL_MASTER = "from-settings"
    assert redis_client.connection_pool(URL).service_name == "from-settings"


def test_celery_is_given_the_master_name_for_a_sentinel_broker():
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] == settings.REDIS_SENTINEL_MASTER
    assert settings.CELERY_RESULT_BACKEND == "django-db"  # results never depend on the broker


def test_celerys_transport_options_are_plain_json_for_a_sentinel_broker():
    """Every worker sends them, as JSON, in its `stats` reply (`celery inspect stats`, Flower's
    worker pages): a value JSON cannot hold made every worker drop every `stats` request."""
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert loads(dumps(options)) == options
    # What the reply carries, for a broker URL naming sentinels (Celery drops only the password).
    info = kombu.Connection(URL, transport_options=options).info()
    assert info["transport"] == "sentinel" and loads(dumps(info))["transport_options"] == options


def test_the_sentinels_connections_get_timeouts_password_and_no_retry():
    """As kombu's Sentinel transport builds them from the transport option `sentinel_kwargs`: a
    sentinel that refuses or hangs costs one timeout, then the next sentinel is asked (redis-py's
    default retries it ten times with back-off)."""
    for sentinel_kwargs in (
        settings.CELERY_BROKER_TRANSPORT_OPTIONS["sentinel_kwargs"],
        redis_client.sentinel_kwargs(password="pw", socket_timeout=5, socket_connect_timeout=5),
    ):
        sentinel = Sentinel([("10.0.0.1", 26379)], sentinel_kwargs=sentinel_kwargs, password="master-password")
        connection = sentinel.sentinels[0].connection_pool.make_connection()
        assert connection.retry.get_retries() == 0
        assert connection.socket_timeout == 5 and connection.socket_connect_timeout == 5
        # The sentinels' own password (none in the settings here), never the master's.
        assert connection.password == (sentinel_kwargs.get("password") or None)


def test_a_redis_url_is_read_by_redis_py_itself():
    pool = redis_client.connection_pool("rediss://:pw@example.org:6380/2", socket_timeout=1)
    assert type(pool) is redis.ConnectionPool
    assert pool.connection_kwargs["host"] == "example.org" and pool.connection_kwargs["db"] == 2
    assert redis_client.client(settings.REDIS_URL).ping()


@pytest.mark.parametrize("url", ["sentinel://h:1/x", "sentinel://h:1;redis://h:2"])
def test_a_malformed_sentinel_url_is_refused(url):
    with pytest.raises(ValueError):
        redis_client.parse_sentinel_url(url)


def test_passwords_are_redacted_from_messages():
    assert redis_client.redact(URL).startswith("sentinel://:***@10.0.0.1:26380/3;sentinel://10.0.0.2")
    assert redis_client.redact("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
