"""The top-up provider interface the fulfilment workers call, whatever the provider behind it.

The money rule: never release a hold for a request the provider may have processed. So `submit`
answers, for one request:

- SUCCEEDED / FAILED only when the provider answered a final status (FAILED carries a stable
  failure_code: `invalid_number`, `operator_declined`, or `provider_rejected` for any code we do
  not know and for a request the provider refused as invalid, 400);
- PENDING when it accepted the request and will say the final status later (lookup, callback);
- RETRY only when the provider certainly did not process it: 429 (retry_after from Retry-After),
  502/503 (answered before processing, by the provider's contract), connection refused, DNS
  failure, connect timeout (the request never reached it). Resubmit with the same external id;
- UNKNOWN whenever it may have been processed: read timeout, connection reset or closed after the
  request was sent (on a reused keep-alive connection, only once the transport's one resend of it
  failed too: providers/http.py), any other 5xx, an answer that cannot be understood. Do not
  release the hold: ask `lookup` (or resubmit with the same external id, which the provider never
  processes twice).

Providers that refuse a reused id instead of answering its transaction (DT One, Reloadly) make a
refusal ambiguous: the id may be ours from an earlier attempt whose answer was lost. Their adapters
believe a refusal (4xx) only once the provider's record shows no transaction under that id; a
record found answers instead, and a record that cannot be read leaves the answer UNKNOWN.

REVERSED when the provider completed the top-up and later reversed it (DT One `REVERSED`, Reloadly
`REFUNDED`): our cost came back to our account there. For a charge still held that is a failure
(nothing was delivered); for a succeeded one it calls for a refund entry. Never a success.

A FAILED answer may carry a `refusal` (REFUSALS): the provider refused before processing for a
reason about our account with it, not about the number or the operator (`insufficient_balance`,
`product_unavailable`). Another provider may serve that sale under a new external id; a decline
about the number or the operator has no refusal and must not move elsewhere.

MISMATCH when the provider refused the external id as already used with another msisdn or amount
(409): never a success or a failure; the charge stays held for an admin. Every answer about a
transaction carries what the provider says it is (external id, msisdn, amount, creation time), and
the fulfilment service checks it against what it asked (ledger/fulfilment/identity.py) before it
records anything. 401/403 (and a wrong base URL, 404/405) raise
ProviderError: misconfiguration, treated as "provider unavailable", never as a failed charge.

`lookup` found=False means the provider has no record of the id *so far*; a request still in
flight may yet be recorded, so resubmitting (idempotent) is the safe way to settle it."""

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from providers import http

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"
    UNKNOWN = "unknown"
    RETRY = "retry"
    MISMATCH = "mismatch"
    REVERSED = "reversed"


FAILURE_CODES = frozenset({"invalid_number", "operator_declined", "provider_rejected"})
REFUSALS = frozenset({"insufficient_balance", "product_unavailable"})


@dataclass(frozen=True)
class SubmitResult:
    outcome: Outcome
    provider_reference: str | None = None
    failure_code: str | None = None
    retry_after: float | None = None
    # What the provider says the transaction is, when it answered with one.
    external_id: str | None = None
    msisdn: str | None = None
    amount: int | None = None
    created_at: datetime | None = None
    detail: str | None = None  # why, for MISMATCH
    product_id: str | None = None  # the provider's product (DVS product, Reloadly operator)
    currency: str | None = None  # of `amount`, when the provider states it
    provider_status: str | None = None  # the provider's own status or error code, for people
    refusal: str | None = None  # one of REFUSALS, for FAILED


@dataclass(frozen=True)
class LookupResult:
    found: bool
    outcome: Outcome | None = None
    provider_reference: str | None = None
    failure_code: str | None = None
    amount: int | None = None
    msisdn: str | None = None
    external_id: str | None = None  # what a callback is about
    created_at: datetime | None = None
    detail: str | None = None
    product_id: str | None = None
    currency: str | None = None
    provider_status: str | None = None
    refusal: str | None = None


@dataclass(frozen=True)
class ProviderTransaction:
    external_id: str
    provider_reference: str
    msisdn: str
    amount: int
    outcome: Outcome
    failure_code: str | None
    created_at: datetime
    product_id: str | None = None
    currency: str | None = None
    cost: int | None = None  # what the provider charged our account, in cost_currency's smallest unit
    cost_currency: str | None = None
    provider_status: str | None = None


@dataclass(frozen=True)
class Balance:
    """Our account at the provider: what it lets us spend now, in the smallest unit of `currency`.
    `holding` (held for transactions in flight) and `credit_limit` where the provider states them."""

    available: int
    currency: str
    holding: int | None = None
    credit_limit: int | None = None


@dataclass(frozen=True)
class CatalogCountry:
    iso_code: str  # ISO 3166-1 alpha-3
    name: str
    calling_code: str | None  # E.164 country code, when the provider states it


@dataclass(frozen=True)
class CatalogOperator:
    provider_operator_id: str
    name: str
    country_iso_code: str
    country_name: str
    prefixes: tuple[str, ...] = ()  # E.164 digits without "+", when the provider publishes them


@dataclass(frozen=True)
class CatalogProduct:
    """One product in the interface's terms: amounts in the smallest unit of their currency.
    Fixed: `amount` and its `cost`. Ranged: `min_amount`..`max_amount`, delivering d destination
    units costs `cost + ceil(d * cost_rate)` (`cost_rate`: cost-currency units per destination
    unit, both smallest units). `retail_*` is the provider's face value, the same way."""

    provider_product_id: str
    name: str
    operator: CatalogOperator
    provider_type: str
    kind: str  # "fixed" | "ranged"
    service: str  # "airtime" | "data"
    destination_currency: str
    cost_currency: str
    cost: int
    amount: int | None = None
    min_amount: int | None = None
    max_amount: int | None = None
    amount_step: int | None = None  # ranged: amounts are min_amount + k * amount_step
    cost_rate: Decimal | None = None
    retail_price: int | None = None
    retail_rate: Decimal | None = None
    description: str = ""
    validity: str = ""
    benefits: tuple = ()


@dataclass(frozen=True)
class UnreadableProduct:
    """A product of the provider's catalog this adapter cannot read (a sync counts and logs it)."""

    provider_product_id: str
    reason: str


@dataclass(frozen=True)
class NumberOperator:
    """One operator a number lookup answered; `identified` is the provider's best guess."""

    provider_operator_id: str
    name: str
    country_iso_code: str
    identified: bool


class ProviderError(Exception):
    """The provider could not be asked (lookup failed, provider down, misconfigured): try later."""


class InvalidCallback(Exception):
    """A callback whose signature does not verify or whose body cannot be understood."""


class Provider(Protocol):
    name: str
    client: http.Client

    def submit(
        self,
        *,
        external_id: str,
        msisdn: str,
        amount: int,
        product_id: str | None = None,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """`amount`: what the number receives, in the smallest unit of the destination currency.
        `product_id`: the provider's product (a DVS product id; a Reloadly operator id); None only
        on a charge recorded before the catalog; an adapter that needs one and gets none raises ProviderError.
        One top-up, start to end: `submit_request`, the request sent, `submit_answer` (`Submits`)."""
        ...

    def submit_request(
        self,
        *,
        external_id: str,
        msisdn: str,
        amount: int,
        product_id: str | None = None,
        callback_url: str | None = None,
    ) -> http.Request | SubmitResult:
        """The top-up's request, built without sending it, so that many go out together
        (`client.exchange_all`); what it needs read first (a product's terms, an operator) is read
        now. A SubmitResult when nothing is to be sent (RETRY: that read failed; FAILED: not
        sellable). Arguments as `submit`'s."""
        ...

    def submit_answer(
        self, external_id: str, request: http.Request, answer: http.Response | http.RequestFailed
    ) -> SubmitResult:
        """What the provider's answer to `request` means, or the failure to get one (NotReached:
        RETRY; any other RequestFailed: UNKNOWN, `unanswered`). It may ask the provider again: a
        refused id's own record, a refused token's replacement."""
        ...

    def lookup(self, external_id: str) -> LookupResult:
        """Raises ProviderError when it cannot tell."""
        ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> dict:
        """What a callback names, checked without asking anyone (its signature where the provider
        signs them, the shape of its body): a notice of JSON values with at least the
        transaction's `external_id` (a string), which a fulfilment worker reads with
        `read_callback`. Raises InvalidCallback."""
        ...

    def read_callback(self, notice: dict) -> LookupResult:
        """The transaction a notice names, as the provider has it (asked again where a callback is
        only a hint). Raises InvalidCallback when there is no such transaction, ProviderError when
        the provider cannot be asked."""
        ...

    def transactions(self, *, created_after: datetime, created_before: datetime) -> Iterator[ProviderTransaction]:
        """What the provider recorded with created_after <= created_at < created_before, by id;
        raises ProviderError (possibly after yielding some)."""
        ...

    def countries(self) -> Iterator[CatalogCountry]:
        """Raises ProviderError."""
        ...

    def operators(self) -> Iterator[CatalogOperator]:
        """Every operator, with its numbering prefixes where the provider publishes them;
        raises ProviderError (possibly after yielding some)."""
        ...

    def products(self) -> Iterator[CatalogProduct | UnreadableProduct]:
        """The whole product catalog, page after page; raises ProviderError (possibly after
        yielding some: a sync that did not see the end withdraws nothing)."""
        ...

    def lookup_number(self, msisdn: str) -> list[NumberOperator]:
        """The operators the provider names for an E.164 number (empty: none); a network call,
        so never from a web request. Raises ProviderError."""
        ...

    def balance(self) -> Balance:
        """Our account's balance at the provider; raises ProviderError."""
        ...


class Submits:
    """`submit` for an adapter that has `submit_request`, `submit_answer` and `client`: one top-up
    through the same two steps the fulfilment worker takes for a batch."""

    def submit(
        self,
        *,
        external_id: str,
        msisdn: str,
        amount: int,
        product_id: str | None = None,
        callback_url: str | None = None,
    ) -> SubmitResult:
        asked = {"msisdn": msisdn, "amount": amount, "product_id": product_id, "callback_url": callback_url}
        request = self.submit_request(external_id=external_id, **asked)
        if isinstance(request, SubmitResult):
            return request
        return self.submit_answer(external_id, request, self.client.exchange(request))


def unanswered(provider: str, external_id: str, failure: http.RequestFailed) -> SubmitResult:
    """A top-up request that got no answer: RETRY when it was never sent, else UNKNOWN."""
    if isinstance(failure, http.NotReached):
        logger.info("provider %s not reached for %s: %s", provider, external_id, failure)
        return SubmitResult(Outcome.RETRY)
    logger.warning("provider %s: %s may have been processed: %r", provider, external_id, failure)
    return SubmitResult(Outcome.UNKNOWN)
