"""The adapter for the sandbox's own dialect (provider_sandbox/, /v1; docs/provider.md): a DT
One-shaped catalog and balance, transactions of our own shape. Which answer means which Outcome,
and why, is in providers/base.py. It sells no products: `product_id` is accepted and not sent."""

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime

from standardwebhooks.webhooks import Webhook

from core.http import retry_after_seconds
from providers import http
from providers.base import (
    FAILURE_CODES,
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

logger = logging.getLogger(__name__)

STATUS_OUTCOMES = {
    "COMPLETED": Outcome.SUCCEEDED,
    "DECLINED": Outcome.FAILED,
    "SUBMITTED": Outcome.PENDING,
    "REVERSED": Outcome.REVERSED,
}
PAGE = 1000


class _Unparsable(ValueError):
    pass


def _failure_code(transaction: dict) -> str | None:
    if transaction["status"] != "DECLINED":
        return None
    code = transaction.get("failure_code")
    return code if code in FAILURE_CODES else "provider_rejected"


def _transaction(payload) -> dict:
    """The answer's transaction, checked for the fields we rely on; raises _Unparsable."""
    if (
        not isinstance(payload, dict)
        or payload.get("status") not in STATUS_OUTCOMES
        or not isinstance(payload.get("id"), int)
        or not isinstance(payload.get("external_id"), str)
        or not isinstance(payload.get("amount"), int)
        or not isinstance(payload.get("msisdn"), str)
    ):
        raise _Unparsable(f"not a transaction: {str(payload)[:200]}")
    return payload


def _created_at(transaction: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(transaction["created_at"])
    except (KeyError, TypeError, ValueError):
        return None


def _lookup_result(transaction: dict) -> LookupResult:
    return LookupResult(
        found=True,
        external_id=transaction["external_id"],
        outcome=STATUS_OUTCOMES[transaction["status"]],
        provider_reference=str(transaction["id"]),
        failure_code=_failure_code(transaction),
        amount=transaction["amount"],
        msisdn=transaction["msisdn"],
        created_at=_created_at(transaction),
        provider_status=transaction["status"],
    )


class DTOneProvider(Submits):
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        callback_secret: str | None = None,
        timeout: tuple[float, float] = (1.0, 5.0),
        name: str = "sandbox",
    ):
        self.base_url, self.api_key, self.callback_secret = http.base_url(base_url), api_key, callback_secret
        self.timeout, self.name = timeout, name
        self.client = http.Client(timeout=timeout, headers={"Authorization": f"Bearer {api_key}"} if api_key else None)
        self._discovery = DvsDiscovery(client=self.client, root=f"{self.base_url}/v1", name=name)

    def submit_request(
        self,
        *,
        external_id: str,
        msisdn: str,
        amount: int,
        product_id: str | None = None,
        callback_url: str | None = None,
    ) -> http.Request:
        body = {"external_id": external_id, "msisdn": msisdn, "amount": amount}
        if product_id is not None:
            body["product_id"] = product_id
        if callback_url:
            body["callback_url"] = callback_url
        return self.client.prepare("POST", f"{self.base_url}/v1/transactions", json=body)

    def submit_answer(
        self, external_id: str, request: http.Request, response: http.Response | http.RequestFailed
    ) -> SubmitResult:
        if isinstance(response, http.RequestFailed):
            return unanswered(self.name, external_id, response)
        status = response.status
        if status in (200, 201):
            try:
                transaction = _transaction(response.json())
            except ValueError as exc:  # also _Unparsable
                logger.warning("provider %s: unparsable answer for %s: %s", self.name, external_id, exc)
                return SubmitResult(Outcome.UNKNOWN)
            return SubmitResult(
                STATUS_OUTCOMES[transaction["status"]],
                provider_reference=str(transaction["id"]),
                failure_code=_failure_code(transaction),
                external_id=transaction["external_id"],
                msisdn=transaction["msisdn"],
                amount=transaction["amount"],
                created_at=_created_at(transaction),
            )
        if status in (408, 429, 502, 503):
            return SubmitResult(Outcome.RETRY, retry_after=retry_after_seconds(response))
        if status in (401, 403, 404, 405):
            raise ProviderError(f"provider {self.name} refused {external_id} with HTTP {status}: misconfigured?")
        if status == 409:
            return SubmitResult(
                Outcome.MISMATCH, detail=f"the provider has {external_id} already, with another msisdn or amount (409)"
            )
        if 400 <= status < 500:
            logger.warning("provider %s rejected %s: HTTP %s %s", self.name, external_id, status, http.text(response))
            return SubmitResult(Outcome.FAILED, failure_code="provider_rejected")
        logger.warning("provider %s: HTTP %s for %s, may have been processed", self.name, status, external_id)
        return SubmitResult(Outcome.UNKNOWN)

    def _get(self, path: str, params: dict) -> dict:
        try:
            response = self.client.request("GET", f"{self.base_url}{path}", params=params)
        except http.RequestFailed as exc:
            raise ProviderError(f"provider {self.name} unreachable: {exc}") from exc
        if response.status != 200:
            raise ProviderError(f"provider {self.name}: HTTP {response.status} for {path}")
        try:
            payload = response.json()
        except ValueError as exc:
            raise ProviderError(f"provider {self.name}: unparsable answer for {path}") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("results"), list):
            raise ProviderError(f"provider {self.name}: unexpected answer for {path}: {str(payload)[:200]}")
        return payload

    def lookup(self, external_id: str) -> LookupResult:
        results = self._get("/v1/transactions", {"external_id": external_id})["results"]
        if not results:
            return LookupResult(found=False)
        try:
            transaction = _transaction(results[0])
        except _Unparsable as exc:
            raise ProviderError(f"provider {self.name}: {exc}") from exc
        if transaction["external_id"] != external_id:
            raise ProviderError(f"provider {self.name} answered a lookup of {external_id} with {transaction}")
        return _lookup_result(transaction)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> dict:
        """A signed callback is the transaction itself: the notice is that transaction."""
        if not self.callback_secret:
            raise InvalidCallback("no callback secret configured: callbacks cannot be verified")
        try:
            Webhook(self.callback_secret).verify(body, dict(headers))
            return _transaction(json.loads(body))
        except Exception as exc:  # the library also lets malformed headers through as ValueError etc.
            raise InvalidCallback(f"{type(exc).__name__}: {exc}") from exc

    def read_callback(self, notice: dict) -> LookupResult:
        try:
            return _lookup_result(_transaction(notice))
        except _Unparsable as exc:
            raise InvalidCallback(str(exc)) from exc

    def transactions(self, *, created_after: datetime, created_before: datetime) -> Iterator[ProviderTransaction]:
        after_id = 0
        while after_id is not None:
            page = self._get(
                "/v1/transactions",
                {
                    "created_after": created_after.isoformat(),
                    "created_before": created_before.isoformat(),
                    "after_id": after_id,
                    "limit": PAGE,
                },
            )
            for item in page["results"]:
                try:
                    transaction = _transaction(item)
                    created_at = datetime.fromisoformat(transaction["created_at"])
                except (KeyError, TypeError, ValueError) as exc:  # also _Unparsable
                    raise ProviderError(f"provider {self.name}: unexpected transaction {str(item)[:200]}") from exc
                yield ProviderTransaction(
                    external_id=transaction["external_id"],
                    provider_reference=str(transaction["id"]),
                    msisdn=transaction["msisdn"],
                    amount=transaction["amount"],
                    outcome=STATUS_OUTCOMES[transaction["status"]],
                    failure_code=_failure_code(transaction),
                    created_at=created_at,
                    provider_status=transaction["status"],
                )
            after_id = page.get("next_after_id")

    def countries(self) -> Iterator[CatalogCountry]:
        return self._discovery.countries()

    def operators(self) -> Iterator[CatalogOperator]:
        return self._discovery.operators()

    def products(self) -> Iterator[CatalogProduct | UnreadableProduct]:
        return self._discovery.products()

    def lookup_number(self, msisdn: str) -> list[NumberOperator]:
        return self._discovery.lookup_number(msisdn)

    def balance(self) -> Balance:
        """The account at the sandbox (`GET /v1/balances`, in DT One's shape)."""
        return self._discovery.balance()
