"""A provider's callback, applied by a fulfilment worker (the web only checks and queues it:
ledger/api/provider.py).

The adapter reads what the callback's notice names (`read_callback`: the DVS transaction asked
again, a signed body as it came). What it says is checked against what we asked
(ledger/fulfilment/identity.py), then recorded as the charge's answer exactly as a send's or a
lookup's is, and applied by the seller's settle. A duplicate, a late callback or one about a charge
already answered changes nothing, except a success for a charge we failed (a late success: a
conflict for an admin). A reversal goes through the same lifecycle function as a lookup's (a refund
of a succeeded charge, the release of a held one)."""

import logging

from ledger.fulfilment.identity import mismatch
from ledger.fulfilment.service import (
    answer_from,
    asked_by_external_id,
    record_answers,
    record_late_successes,
    record_mismatches,
    record_reversals,
    reversal_from,
)
from providers import default_provider_name, get_provider
from providers.base import InvalidCallback, Outcome

logger = logging.getLogger(__name__)

FINAL = (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.REVERSED)


class ReversalNotPosted(Exception):
    """The reversal is of a charge whose success the settle has not posted yet: apply it later."""


def apply_callback(provider: str, notice: dict) -> None:
    """Raises ProviderError when the provider cannot be asked and ReversalNotPosted: both are
    tried again later. A notice the provider does not confirm changes nothing and is logged."""
    asked = asked_by_external_id([notice["external_id"]]).get(notice["external_id"])
    if asked is None or (asked.provider or default_provider_name()) != provider:
        # Not ours, or not the provider this charge was sent to: nothing it says settles it, so the
        # provider is not asked (an unsigned callback costs anyone who sends one no request of ours).
        return
    try:
        said = get_provider(provider).read_callback(notice)
    except InvalidCallback as exc:
        logger.warning(
            "provider %s: a callback it does not confirm: %s",
            provider,
            exc,
            extra={"event": "ledger.callback_unconfirmed", "provider": provider},
        )
        return
    if said.outcome not in FINAL:
        return
    if why := mismatch(asked, said):
        record_mismatches([(asked, why, said)])
    elif said.outcome is Outcome.REVERSED:
        if record_reversals([reversal_from(asked, said)]).not_posted_yet:
            raise ReversalNotPosted(f"charge {asked.charge_id}")
    else:
        record_answers([answer_from(asked, said)])
        if said.outcome is Outcome.SUCCEEDED:
            record_late_successes([(asked, said)])  # only a charge we failed: a conflict
