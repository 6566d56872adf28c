"""The adapter for Reloadly's airtime API, as its contract is published (docs/provider.md,
"Reloadly"): OAuth2 client-credentials tokens (providers/reloadly_auth.py); `POST /topups` with
the operator, the amount in the destination currency (`useLocalAmount`), our external id as
`customIdentifier` and the recipient's phone; the status of a top-up by its transaction id; the
transaction reports filtered by custom identifier (our lookup) or by dates (reconciliation); the
account balance; operators by id, paged and auto-detected from a number and its country.

Reloadly never lets a custom identifier be used twice, but does not answer a reused one with its
transaction: a refusal is believed only after the reports show no top-up under our identifier
(providers/base.py). Reloadly's airtime contract has no callbacks: final statuses come by lookup."""

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import phonenumbers

from core.countries import alpha3
from core.currencies import UnknownCurrency, exponent, to_minor
from core.http import retry_after_seconds
from providers import http, reloadly_catalog
from providers import reloadly_shapes as shapes
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
from providers.dvs_shapes import floor_minor
from providers.reloadly_auth import TokenSource, TokenUnavailable

logger = logging.getLogger(__name__)

ACCEPT = "application/com.reloadly.topups-v1+json"
PAGE_SIZE = 200
OPERATOR_TTL = 300.0  # seconds an operator read for sending is trusted (its amounts, currency, country)


class _NotSellable(Exception):
    def __init__(
        self, detail: str, failure_code: str = "provider_rejected", refusal: str | None = "product_unavailable"
    ):
        super().__init__(detail)
        self.failure_code, self.refusal = failure_code, refusal


class ReloadlyProvider(Submits):
    def __init__(
        self,
        *,
        base_url: str,
        auth_url: str,
        client_id: str,
        client_secret: str,
        audience: str | None = None,
        timeout: tuple[float, float] = (1.0, 5.0),
        name: str = "reloadly",
    ):
        """`base_url`: `https://topups.reloadly.com` (sandbox: `https://topups-sandbox.reloadly.com`);
        `auth_url`: `https://auth.reloadly.com/oauth/token`; `audience` defaults to `base_url`."""
        self.base_url, self.timeout, self.name = http.base_url(base_url), timeout, name
        self.tokens = TokenSource(
            auth_url=auth_url,
            client_id=client_id,
            client_secret=client_secret,
            audience=audience or self.base_url,
            timeout=timeout,
            name=name,
        )
        self.client = http.Client(timeout=timeout, headers={"Accept": ACCEPT})
        self._operators: dict[str, tuple[float, dict]] = {}
        self._operators_lock = threading.Lock()

    def _request(self, method: str, path: str, **kwargs) -> http.Response:
        """One call with a token. A 401 drops the token and the call is made once more with a new
        one: a 401 is answered before anything is processed. Raises TokenUnavailable and
        http.RequestFailed."""
        request = self._prepare(method, path, self.tokens.token(), **kwargs)
        response = self.client.send(request)
        if response.status == 401:
            response = self.client.send(self._again_with_new_token(request, response))
        return response

    def _prepare(self, method: str, path: str, token: str, **kwargs) -> http.Request:
        return self.client.prepare(
            method, f"{self.base_url}{path}", headers={"Authorization": f"Bearer {token}"}, **kwargs
        )

    def _again_with_new_token(self, request: http.Request, refused: http.Response) -> http.Request:
        """`request` with a new token in place of the one a 401 refused. Raises TokenUnavailable."""
        logger.info("provider %s: token refused (%s), asking for a new one", self.name, _code(refused))
        self.tokens.invalidate(request.header("Authorization").removeprefix("Bearer "))
        return request.with_header("Authorization", f"Bearer {self.tokens.token()}")

    def _get(self, path: str, params: dict | None = None, *, missing_ok: bool = False):
        """A 200 answer's JSON, or None for a 404 that names an error when `missing_ok`; raises
        ProviderError otherwise."""
        try:
            response = self._request("GET", path, params=params)
        except http.RequestFailed as exc:
            raise ProviderError(f"provider {self.name} unreachable: {exc}") from exc
        if missing_ok and response.status == 404 and _code(response):
            return None
        if response.status != 200:
            raise ProviderError(f"provider {self.name}: HTTP {response.status} for {path} ({_code(response)})")
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderError(f"provider {self.name}: unparsable answer for {path}") from exc

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
        try:
            operator = self._operator(product_id, msisdn)
            body = {
                "operatorId": int(operator["id"]),
                "amount": _local_amount(operator, amount),
                "useLocalAmount": True,
                "customIdentifier": external_id,
                "recipientPhone": {"countryCode": operator["country"]["isoName"], "number": msisdn.lstrip("+")},
            }
        except _NotSellable as exc:
            logger.warning("provider %s: %s not sent: %s", self.name, external_id, exc)
            return SubmitResult(Outcome.FAILED, failure_code=exc.failure_code, refusal=exc.refusal, detail=str(exc))
        except ProviderError as exc:  # the operator could not be read: nothing was sent
            logger.info("provider %s: %s not sent yet: %s", self.name, external_id, exc)
            return SubmitResult(Outcome.RETRY, detail=str(exc))
        try:
            return self._prepare("POST", "/topups", self.tokens.token(), json=body)
        except TokenUnavailable as exc:
            logger.warning("provider %s: %s not sent: %s", self.name, external_id, exc)
            return SubmitResult(Outcome.RETRY, detail=str(exc))

    def _operator(self, product_id: str | None, msisdn: str) -> dict:
        """The operator to send to: the one the product names (cached OPERATOR_TTL seconds), or the
        one Reloadly detects for the number. Raises _NotSellable or ProviderError."""
        if not product_id:
            detected = self._detect(msisdn)
            if detected is None:
                raise _NotSellable(f"no operator detected for {msisdn}", "invalid_number", None)
            return detected
        key = reloadly_catalog.operator_id(product_id)
        with self._operators_lock:
            cached = self._operators.get(key)
        if cached is not None and time.monotonic() - cached[0] < OPERATOR_TTL:
            return cached[1]
        if not key.isdigit():
            raise _NotSellable(f"{product_id!r} is not a Reloadly operator id")
        operator = self._get(f"/operators/{key}", missing_ok=True)
        if not isinstance(operator, dict):
            raise _NotSellable(f"operator {key} is not available")
        with self._operators_lock:
            self._operators[key] = (time.monotonic(), operator)
        return operator

    def submit_answer(
        self, external_id: str, request: http.Request, response: http.Response | http.RequestFailed
    ) -> SubmitResult:
        if not isinstance(response, http.RequestFailed) and response.status == 401:
            try:  # refused before processing: once more with a new token (`_request`)
                response = self.client.exchange(self._again_with_new_token(request, response))
            except TokenUnavailable as exc:
                logger.warning("provider %s: %s not sent again: %s", self.name, external_id, exc)
                return SubmitResult(Outcome.RETRY, detail=str(exc))
        if isinstance(response, http.RequestFailed):
            return unanswered(self.name, external_id, response)
        status = response.status
        if status in (200, 201):
            try:
                return _submit_result(shapes.transaction_from(response.json()))
            except ValueError as exc:  # also Unreadable
                logger.warning("provider %s: unreadable answer for %s: %s", self.name, external_id, exc)
                return SubmitResult(Outcome.UNKNOWN)
        if status in (408, 429, 502, 503):
            return SubmitResult(Outcome.RETRY, retry_after=retry_after_seconds(response))
        code = _code(response)
        if status in (401, 403, 405) or (status == 404 and not code):
            raise ProviderError(f"provider {self.name} refused {external_id} with HTTP {status}: misconfigured?")
        if 400 <= status < 500:
            return self._refused(external_id, code)
        logger.warning("provider %s: HTTP %s for %s, may have been processed", self.name, status, external_id)
        return SubmitResult(Outcome.UNKNOWN)

    def _refused(self, external_id: str, code: str | None) -> SubmitResult:
        """A 4xx: the identifier's top-up if Reloadly has one (an earlier attempt's), else the refusal."""
        try:
            found = self._find(external_id)
        except ProviderError as exc:
            logger.warning(
                "provider %s refused %s (%s) and cannot be asked about it: %s", self.name, external_id, code, exc
            )
            return SubmitResult(Outcome.UNKNOWN, provider_status=code)
        if found is not None:
            return _submit_result(found, refused_with=code)
        if code in shapes.TRANSIENT:
            return SubmitResult(Outcome.RETRY, provider_status=code)
        if code is not None and code not in shapes.REFUSALS and any(m in code for m in shapes.REUSED_MARKERS):
            logger.error("provider %s: %s refused as reused (%s), but no top-up has it", self.name, external_id, code)
            return SubmitResult(Outcome.UNKNOWN, provider_status=code)
        failure_code, refusal = shapes.REFUSALS.get(code or "", ("provider_rejected", None))
        logger.info("provider %s refused %s: %s", self.name, external_id, code)
        return SubmitResult(Outcome.FAILED, failure_code=failure_code, refusal=refusal, provider_status=code)

    # Reading

    def _find(self, external_id: str) -> shapes.ReloadlyTransaction | None:
        for item in self._report({"customIdentifier": external_id}):
            if isinstance(item, dict) and item.get("customIdentifier") == external_id:
                return self._read(item)
        return None

    def _read(self, item) -> shapes.ReloadlyTransaction:
        try:
            return shapes.transaction_from(item)
        except shapes.Unreadable as exc:
            raise ProviderError(f"provider {self.name}: {exc}") from exc

    def _report(self, params: dict) -> Iterator:
        page = 1
        while True:
            answer = self._get("/topups/reports/transactions", {**params, "page": page, "size": PAGE_SIZE})
            if not isinstance(answer, dict) or not isinstance(answer.get("content"), list):
                raise ProviderError(f"provider {self.name}: unexpected report page {str(answer)[:200]}")
            yield from answer["content"]
            if answer.get("last", True) or not answer["content"]:
                return
            page += 1

    def lookup(self, external_id: str) -> LookupResult:
        found = self._find(external_id)
        if found is None:
            return LookupResult(found=False)
        if found.outcome is Outcome.PENDING:  # the reports may lag: ask for its status now
            now = self._get(f"/topups/{found.reference}/status")
            found = self._read(now.get("transaction") if isinstance(now, dict) else None)
        return _lookup_result(found)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> dict:
        raise InvalidCallback(f"provider {self.name} sends no callbacks: statuses come by lookup")

    def read_callback(self, notice: dict) -> LookupResult:
        raise InvalidCallback(f"provider {self.name} sends no callbacks: statuses come by lookup")

    def transactions(self, *, created_after: datetime, created_before: datetime) -> Iterator[ProviderTransaction]:
        # Reloadly's dates are whole seconds (read as UTC), both ends included: ask wide, keep ours.
        start = created_after.astimezone(UTC).replace(microsecond=0)
        end = created_before.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        window = {"startDate": start.strftime("%Y-%m-%d %H:%M:%S"), "endDate": end.strftime("%Y-%m-%d %H:%M:%S")}
        for item in self._report(window):
            found = self._read(item)
            if None in (found.created_at, found.msisdn, found.amount, found.external_id):
                raise ProviderError(f"provider {self.name}: top-up {found.reference} lacks what we compare")
            if created_after <= found.created_at < created_before:
                yield _provider_transaction(found)

    def balance(self) -> Balance:
        answer = self._get("/accounts/balance")
        try:
            return Balance(
                available=floor_minor(answer["balance"], answer["currencyCode"]), currency=answer["currencyCode"]
            )
        except (KeyError, TypeError, ValueError, ArithmeticError, UnknownCurrency) as exc:
            raise ProviderError(f"provider {self.name}: unexpected balance {str(answer)[:200]}") from exc

    # Discovery

    def _operator_pages(self) -> Iterator[dict]:
        page = 1
        while True:
            answer = self._get(
                "/operators", {"page": page, "size": PAGE_SIZE, "includeBundles": "true", "includeData": "true"}
            )
            if not isinstance(answer, dict) or not isinstance(answer.get("content"), list):
                raise ProviderError(f"provider {self.name}: unexpected operators page {str(answer)[:200]}")
            yield from answer["content"]
            if answer.get("last", True) or not answer["content"]:
                return
            page += 1

    def countries(self) -> Iterator[CatalogCountry]:
        answer = self._get("/countries")
        for item in answer if isinstance(answer, list) else [answer]:
            try:
                yield reloadly_catalog.country_from(item)
            except (KeyError, TypeError) as exc:
                raise ProviderError(f"provider {self.name}: unexpected country {str(item)[:200]}") from exc

    def operators(self) -> Iterator[CatalogOperator]:
        for item in self._operator_pages():
            try:
                yield reloadly_catalog.operator_from(item)
            except (KeyError, TypeError) as exc:
                raise ProviderError(f"provider {self.name}: unexpected operator {str(item)[:200]}") from exc

    def products(self) -> Iterator[CatalogProduct | UnreadableProduct]:
        for item in self._operator_pages():
            yield from reloadly_catalog.products_from(item)

    def _detect(self, msisdn: str) -> dict | None:
        """Reloadly's operator for the number, in the country its numbering plan says (None: none)."""
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(msisdn))
        except phonenumbers.NumberParseException:
            return None
        if not region or region == "ZZ":
            return None
        found = self._get(f"/operators/auto-detect/phone/{msisdn.lstrip('+')}/countries/{region}", missing_ok=True)
        return found if isinstance(found, dict) and found.get("id") is not None else None

    def lookup_number(self, msisdn: str) -> list[NumberOperator]:
        found = self._detect(msisdn)
        if found is None:
            return []
        try:
            country = alpha3(found["country"]["isoName"])
            return [NumberOperator(str(found["id"]), str(found["name"]), country or "", identified=True)]
        except (KeyError, TypeError) as exc:
            raise ProviderError(f"provider {self.name}: unexpected operator {str(found)[:200]}") from exc


def _code(response: http.Response) -> str | None:
    try:
        return shapes.error_code(response.json())
    except ValueError:
        return None


def _local_amount(operator: dict, amount: int) -> str:
    """`amount` (smallest unit) as the decimal Reloadly takes, if the operator sells it locally."""
    currency = operator.get("destinationCurrencyCode")
    if operator.get("supportsLocalAmounts") is not True or not currency:
        raise _NotSellable(f"operator {operator.get('id')} takes no amounts in its own currency")
    try:
        kind = operator.get("denominationType")
        if kind == "RANGE":
            low, high = to_minor(operator["localMinAmount"], currency), to_minor(operator["localMaxAmount"], currency)
            sellable = low <= amount <= high
        else:
            sellable = amount in {to_minor(value, currency) for value in operator.get("localFixedAmounts") or []}
    except (KeyError, TypeError, ValueError, UnknownCurrency) as exc:
        raise _NotSellable(f"operator {operator.get('id')} is unreadable: {exc}") from exc
    if not sellable:
        raise _NotSellable(f"operator {operator.get('id')} does not sell {amount} {currency}")
    return str(Decimal(amount).scaleb(-exponent(currency)))


def _identity(t: shapes.ReloadlyTransaction, refused_with: str | None = None) -> dict:
    failure_code, refusal = None, None
    if t.outcome is Outcome.FAILED:
        failure_code, refusal = shapes.REFUSALS.get(refused_with or "", ("operator_declined", None))
    return {
        "provider_reference": t.reference,
        "failure_code": failure_code,
        "refusal": refusal,
        "external_id": t.external_id,
        "msisdn": t.msisdn,
        "amount": t.amount,
        "created_at": t.created_at,
        "product_id": t.product_id,
        "currency": t.currency,
        "provider_status": t.status,
    }


def _submit_result(t: shapes.ReloadlyTransaction, refused_with: str | None = None) -> SubmitResult:
    return SubmitResult(t.outcome, **_identity(t, refused_with))


def _lookup_result(t: shapes.ReloadlyTransaction) -> LookupResult:
    return LookupResult(found=True, outcome=t.outcome, **_identity(t))


def _provider_transaction(t: shapes.ReloadlyTransaction) -> ProviderTransaction:
    return ProviderTransaction(
        external_id=t.external_id,
        provider_reference=t.reference,
        msisdn=t.msisdn,
        amount=t.amount,
        outcome=t.outcome,
        failure_code=_identity(t)["failure_code"],
        created_at=t.created_at,
        product_id=t.product_id,
        currency=t.currency,
        cost=t.cost,
        cost_currency=t.cost_currency,
        provider_status=t.status,
    )
