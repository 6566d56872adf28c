"""The adapter for DT One's Digital Value Services API, as its contract is published (docs/provider.md,
"DT One DVS"): HTTP basic auth with our key and secret; asynchronous transactions created and
confirmed in one request (`auto_confirm`) under our `external_id`; the final status by callback
or by lookup on the external id; balances; discovery as providers/dvs_discovery.py reads it.
Which answer means which Outcome, and why: providers/base.py and providers/dvs_shapes.py.

DVS refuses a reused external id (400, code 1007001) instead of answering its transaction, so a
refusal is believed only after a lookup of the id finds nothing (providers/base.py)."""

import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from standardwebhooks.webhooks import Webhook

from core.currencies import exponent
from core.http import retry_after_seconds
from providers import dvs_shapes, http
from providers.base import (
    Balance,
    CatalogCountry,
    CatalogOperator,
    CatalogProduct,
    InvalidCallback,
    LookupResult,
    NumberOperator,
    Outcome,
    ProviderError,
    ProviderTransaction,
    SubmitResult,
    Submits,
    UnreadableProduct,
    unanswered,
)
from providers.dvs_discovery import DvsDiscovery
from providers.dvs_shapes import DvsTransaction

logger = logging.getLogger(__name__)

MAX_WINDOW = timedelta(hours=24)  # DVS lists transactions by creation date 24 hours at a time
PRODUCT_TTL = 300.0  # seconds a product read for sending is trusted (its type, currency, amounts)


class _NotSellable(Exception):
    """The product cannot be sold as asked: gone from our account, unreadable, or not that amount."""


class DVSProvider(Submits):
    def __init__(
        self,
        *,
        base_url: str,
        key: str,
        secret: str,
        callback_secret: str | None = None,
        currency: str | None = None,
        timeout: tuple[float, float] = (1.0, 5.0),
        name: str = "dvs",
    ):
        """`base_url`: the versioned root, `https://dvs-api.dtone.com/v1` (DT One's pre-production:
        `https://preprod-dvs-api.dtone.com/v1`). `currency`: the account balance `balance()` reads
        (the first one DVS lists without it). `callback_secret`: a Standard Webhooks secret when the
        callbacks come signed (the sandbox signs them; DT One documents no signature)."""
        self.base_url, self.callback_secret, self.currency = http.base_url(base_url), callback_secret, currency
        self.timeout, self.name = timeout, name
        self.client = http.Client(timeout=timeout, headers=http.basic_auth(key, secret))
        self._discovery = DvsDiscovery(client=self.client, root=self.base_url, name=name)
        self._products: dict[str, tuple[float, CatalogProduct]] = {}
        self._products_lock = threading.Lock()

    # Sending

    def submit_request(
        self,
        *,
        external_id: str,
        msisdn: str,
        amount: int,
        product_id: str | None = None,
        callback_url: str | None = None,
    ) -> http.Request | SubmitResult:
        if not product_id:
            raise ProviderError(f"provider {self.name} sells products: {external_id} names none")
        try:
            body = self._body(external_id, msisdn, amount, product_id)
        except _NotSellable as exc:
            logger.warning("provider %s: %s not sent: %s", self.name, external_id, exc)
            return SubmitResult(
                Outcome.FAILED, failure_code="provider_rejected", refusal="product_unavailable", detail=str(exc)
            )
        except ProviderError as exc:  # the product could not be read: nothing was sent
            logger.info("provider %s: %s not sent yet: %s", self.name, external_id, exc)
            return SubmitResult(Outcome.RETRY, detail=str(exc))
        if callback_url:
            body["callback_url"] = callback_url
        return self.client.prepare("POST", f"{self.base_url}/async/transactions", json=body)

    def _body(self, external_id: str, msisdn: str, amount: int, product_id: str) -> dict:
        product = self._product(product_id)
        body = {
            "external_id": external_id,
            "product_id": int(product_id),
            "auto_confirm": True,
            "credit_party_identifier": {"mobile_number": msisdn},
        }
        if product.kind == "fixed":
            if amount != product.amount:
                raise _NotSellable(f"product {product_id} delivers {product.amount}, not {amount}")
            return body
        step_ok = not product.amount_step or (amount - product.min_amount) % product.amount_step == 0
        if not (product.min_amount <= amount <= product.max_amount and step_ok):
            raise _NotSellable(f"product {product_id} does not deliver {amount} {product.destination_currency}")
        currency = product.destination_currency
        return body | {
            "calculation_mode": "DESTINATION_AMOUNT",
            "destination": {
                "unit_type": "CURRENCY",
                "unit": currency,
                "amount": float(Decimal(amount).scaleb(-exponent(currency))),
            },
        }

    def _product(self, product_id: str) -> CatalogProduct:
        """The product as DVS states it now (cached PRODUCT_TTL seconds); raises _NotSellable or
        ProviderError."""
        with self._products_lock:
            cached = self._products.get(product_id)
        if cached is not None and time.monotonic() - cached[0] < PRODUCT_TTL:
            return cached[1]
        if not product_id.isdigit():
            raise _NotSellable(f"{product_id!r} is not a DVS product id")
        product = self._discovery.product(product_id)
        if product is None:
            raise _NotSellable(f"product {product_id} is not available in our account")
        if isinstance(product, UnreadableProduct):
            raise _NotSellable(f"product {product_id} cannot be sold: {product.reason}")
        with self._products_lock:
            self._products[product_id] = (time.monotonic(), product)
        return product

    def submit_answer(
        self, external_id: str, request: http.Request, response: http.Response | http.RequestFailed
    ) -> SubmitResult:
        if isinstance(response, http.RequestFailed):
            return unanswered(self.name, external_id, response)
        status = response.status
        if status in (200, 201, 202):
            try:
                return _submit_result(dvs_shapes.transaction_from(response.json()))
            except ValueError as exc:  # also Unreadable
                logger.warning("provider %s: unreadable answer for %s: %s", self.name, external_id, exc)
                return SubmitResult(Outcome.UNKNOWN)
        if status in (408, 429, 502, 503):
            return SubmitResult(Outcome.RETRY, retry_after=retry_after_seconds(response))
        codes = dvs_shapes.error_codes(_json(response))
        if status in (401, 403, 405) or (status == 404 and not codes):
            raise ProviderError(f"provider {self.name} refused {external_id} with HTTP {status}: misconfigured?")
        if 400 <= status < 500:
            return self._refused(external_id, codes)
        logger.warning("provider %s: HTTP %s for %s, may have been processed", self.name, status, external_id)
        return SubmitResult(Outcome.UNKNOWN)

    def _refused(self, external_id: str, codes: list[int]) -> SubmitResult:
        """A 4xx: the id's transaction if DVS has one (an earlier attempt's), else the refusal."""
        try:
            found = self._find(external_id)
        except ProviderError as exc:
            logger.warning(
                "provider %s refused %s (%s) and cannot be asked about it: %s", self.name, external_id, codes, exc
            )
            return SubmitResult(Outcome.UNKNOWN, provider_status=_codes(codes))
        if found is not None:
            return _submit_result(found)
        if dvs_shapes.ID_ALREADY_USED in codes:  # used, yet nowhere to be seen: hold it for a person
            logger.error("provider %s: %s refused as already used, but no transaction has it", self.name, external_id)
            return SubmitResult(Outcome.UNKNOWN, provider_status=_codes(codes))
        failure_code, refusal = dvs_shapes.refusal_of(codes)
        logger.info("provider %s refused %s: %s", self.name, external_id, codes)
        return SubmitResult(Outcome.FAILED, failure_code=failure_code, refusal=refusal, provider_status=_codes(codes))

    # Reading

    def _find(self, external_id: str) -> DvsTransaction | None:
        for item in self._discovery.pages("/transactions", {"external_id": external_id}):
            try:
                transaction = dvs_shapes.transaction_from(item)
            except dvs_shapes.Unreadable as exc:
                raise ProviderError(f"provider {self.name}: {exc}") from exc
            if transaction.external_id == external_id:
                return transaction
        return None

    def lookup(self, external_id: str) -> LookupResult:
        found = self._find(external_id)
        return LookupResult(found=False) if found is None else _lookup_result(found)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> dict:
        """A callback names a transaction (`id`, `external_id`): an unsigned body is a hint, never
        an answer, so the notice is only those two, and `read_callback` asks DVS what it is."""
        try:
            if self.callback_secret:
                Webhook(self.callback_secret).verify(body, dict(headers))
            told = json.loads(body)
            transaction_id, external_id = told["id"], told["external_id"]
            if not isinstance(transaction_id, int) or not isinstance(external_id, str):
                raise ValueError("id and external_id are required")
        except Exception as exc:  # the library also lets malformed headers through as ValueError etc.
            raise InvalidCallback(f"{type(exc).__name__}: {exc}") from exc
        return {"id": transaction_id, "external_id": external_id}

    def read_callback(self, notice: dict) -> LookupResult:
        """What DVS says the notice's transaction is (`GET /transactions/{id}`); raises
        ProviderError when DVS cannot be asked (the worker asks again later)."""
        transaction_id, external_id = notice["id"], notice["external_id"]
        response = self._discovery.get(f"/transactions/{transaction_id}", missing_ok=True)
        if response is None:
            raise InvalidCallback(f"no transaction {transaction_id} at {self.name}")
        try:
            transaction = dvs_shapes.transaction_from(_json(response))
        except dvs_shapes.Unreadable as exc:
            raise ProviderError(f"provider {self.name}: {exc}") from exc
        if transaction.external_id != external_id:
            raise InvalidCallback(f"transaction {transaction_id} is {transaction.external_id}, not {external_id}")
        return _lookup_result(transaction)

    def transactions(self, *, created_after: datetime, created_before: datetime) -> Iterator[ProviderTransaction]:
        start = created_after
        while start < created_before:
            end = min(start + MAX_WINDOW, created_before)
            for item in self._discovery.pages(
                "/transactions", {"from_date": start.isoformat(), "to_date": end.isoformat()}
            ):
                try:
                    found = dvs_shapes.transaction_from(item)
                except dvs_shapes.Unreadable as exc:
                    raise ProviderError(f"provider {self.name}: {exc}") from exc
                if found.created_at is None or found.msisdn is None or found.amount is None:
                    raise ProviderError(f"provider {self.name}: transaction {found.reference} lacks what we compare")
                if start <= found.created_at < end:  # to_date is inclusive: the next window has `end`
                    yield _provider_transaction(found)
            start = end

    def balance(self) -> Balance:
        return self._discovery.balance(self.currency)

    def countries(self) -> Iterator[CatalogCountry]:
        return self._discovery.countries()

    def operators(self) -> Iterator[CatalogOperator]:
        return self._discovery.operators()

    def products(self) -> Iterator[CatalogProduct | UnreadableProduct]:
        return self._discovery.products()

    def lookup_number(self, msisdn: str) -> list[NumberOperator]:
        return self._discovery.lookup_number(msisdn)


def _json(response: http.Response):
    try:
        return response.json()
    except ValueError:
        return None


def _codes(codes: list[int]) -> str | None:
    return ",".join(map(str, codes)) or None


def _identity(t: DvsTransaction) -> dict:
    return {
        "provider_reference": t.reference,
        "failure_code": t.failure_code,
        "external_id": t.external_id,
        "msisdn": t.msisdn,
        "amount": t.amount,
        "created_at": t.created_at,
        "product_id": t.product_id,
        "currency": t.currency,
        "provider_status": t.status,
        "refusal": t.refusal,
    }


def _submit_result(t: DvsTransaction) -> SubmitResult:
    return SubmitResult(t.outcome, **_identity(t))


def _lookup_result(t: DvsTransaction) -> LookupResult:
    return LookupResult(found=True, outcome=t.outcome, **_identity(t))


def _provider_transaction(t: DvsTransaction) -> ProviderTransaction:
    return ProviderTransaction(
        external_id=t.external_id,
        provider_reference=t.reference,
        msisdn=t.msisdn,
        amount=t.amount,
        outcome=t.outcome,
        failure_code=t.failure_code,
        created_at=t.created_at,
        product_id=t.product_id,
        currency=t.currency,
        cost=t.cost,
        cost_currency=t.cost_currency,
        provider_status=t.status,
    )
