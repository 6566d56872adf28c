"""Concurrent API clients for the settlement tests: threads share this process, processes are
spawned fresh (their own interpreter, Django and database connection)."""

import os
import threading
from collections.abc import Callable

from django.db import connection


def run_threads(count: int, work: Callable[[int], list]) -> list:
    """Run `work(index)` in `count` threads released together; returns all their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # surfaced below; a silent thread failure would hide a bug
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [item for result in results for item in result]


def submit_charges_in_child(env: dict, user_ids: list[int], plan: list[tuple[int, int]], start_event) -> list[int]:
    """Entry point of a client process: submit `plan` = [(user_index, amount), ...] over the API
    and return the HTTP status codes. Forked, Django is set up already; spawned, it is set up here."""
    os.environ.update(env)
    import django

    django.setup()
    from django.db import connections

    connections.close_all()  # never a connection inherited from the parent
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    clients = []
    for user in get_user_model().objects.filter(pk__in=user_ids):
        client = APIClient()
        client.force_authenticate(user)
        clients.append((user.pk, client))
    by_id = dict(clients)
    start_event.wait()
    codes = []
    for user_index, amount in plan:
        response = by_id[user_ids[user_index]].post(
            "/api/v1/charges/", {"phone_number": "09121234567", "amount": amount}, format="json"
        )
        codes.append(response.status_code)
    return codes
