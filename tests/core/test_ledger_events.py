"""The ledger's one port (`ledger.events`): the settings name a subscriber list for each of its
events and nothing else, and every subscriber imports (`ledger.E001`)."""

from django.conf import settings
from django.test import override_settings

from ledger.events import EVENTS, check_subscribers


def test_configured_subscribers_cover_every_ledger_event():
    assert set(settings.LEDGER_EVENT_SUBSCRIBERS) == set(EVENTS)
    assert check_subscribers() == []


def test_check_refuses_a_missing_event_an_unknown_one_and_a_subscriber_that_does_not_import():
    subscribers = {event: [] for event in EVENTS if event != "intents_recorded"}
    subscribers["intents_settled"] = ["notifications.subscribers.no_such_function"]
    subscribers["charge_eaten"] = []
    with override_settings(LEDGER_EVENT_SUBSCRIBERS=subscribers):
        messages = [(error.id, error.msg) for error in check_subscribers()]
    assert [(id_, msg.split(":")[1].strip()) for id_, msg in messages[:2]] == [
        ("ledger.E001", "'charge_eaten' is not an event of ledger.events"),
        ("ledger.E001", "'intents_recorded' has no subscriber list"),
    ]
    assert len(messages) == 3 and "intents_settled" in messages[2][1] and "no_such_function" in messages[2][1]
