"""DT One DVS's discovery and account reads, for any adapter that talks to a DVS-shaped API (the DVS
adapter, and the sandbox's own dialect, which serves its catalog in DVS's shape): countries,
operators and products page after page, a mobile-number lookup, a product by id, balances.
Reading each object is providers/dtone_catalog.py's and providers/dvs_shapes.py's."""

from collections.abc import Iterator

import requests

from providers import dtone_catalog, dvs_shapes
from providers.base import (
    Balance,
    CatalogCountry,
    CatalogOperator,
    CatalogProduct,
    NumberOperator,
    ProviderError,
    UnreadableProduct,
)
from providers.http import ThreadSessions

CATALOG_PAGE = 100  # DVS's largest per_page


class DvsDiscovery:
    """`root` is the API's versioned root (`https://dvs-api.dtone.com/v1`, the sandbox's `.../v1`)."""

    def __init__(self, *, sessions: ThreadSessions, root: str, timeout: tuple[float, float], name: str):
        self.sessions, self.root, self.timeout, self.name = sessions, root, timeout, name

    def get(self, path: str, params: dict | None = None, *, missing_ok: bool = False) -> requests.Response | None:
        """A 200 answer, or None for a 404 when `missing_ok`; raises ProviderError otherwise."""
        try:
            response = self.sessions.get().get(
                f"{self.root}{path}", params=params, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise ProviderError(f"provider {self.name} unreachable: {exc}") from exc
        if missing_ok and response.status_code == 404 and dvs_shapes.error_codes(_json(response)):
            return None
        if response.status_code != 200:
            raise ProviderError(f"provider {self.name}: HTTP {response.status_code} for {path}")
        return response

    def pages(self, path: str, params: dict | None = None) -> Iterator:
        """Every item of a DVS list, page by page (`page`, `per_page`; the next in `X-Next-Page`)."""
        page = 1
        while page:
            response = self.get(path, {**(params or {}), "page": page, "per_page": CATALOG_PAGE})
            items = _json(response)
            if not isinstance(items, list):
                raise ProviderError(f"provider {self.name}: page {page} of {path} is not a list")
            yield from items
            following = response.headers.get("X-Next-Page", "")
            page = int(following) if following.isdigit() and int(following) > page else 0

    def countries(self) -> Iterator[CatalogCountry]:
        for item in self.pages("/countries"):
            try:
                yield dtone_catalog.country_from(item)
            except (KeyError, TypeError) as exc:
                raise ProviderError(f"provider {self.name}: unexpected country {str(item)[:200]}") from exc

    def operators(self) -> Iterator[CatalogOperator]:
        for item in self.pages("/operators"):
            try:
                yield dtone_catalog.operator_from(item)
            except (KeyError, TypeError) as exc:
                raise ProviderError(f"provider {self.name}: unexpected operator {str(item)[:200]}") from exc

    def products(self) -> Iterator[CatalogProduct | UnreadableProduct]:
        for item in self.pages("/products"):
            yield dtone_catalog.product_from(item)

    def product(self, product_id: str) -> CatalogProduct | UnreadableProduct | None:
        """One product (None: not in our account)."""
        response = self.get(f"/products/{product_id}", missing_ok=True)
        return None if response is None else dtone_catalog.product_from(_json(response))

    def lookup_number(self, msisdn: str) -> list[NumberOperator]:
        try:
            response = self.sessions.get().post(
                f"{self.root}/lookup/mobile-number",
                json={"mobile_number": msisdn},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ProviderError(f"provider {self.name} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ProviderError(f"provider {self.name}: HTTP {response.status_code} for a number lookup")
        try:
            return [dtone_catalog.lookup_from(item) for item in response.json()]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"provider {self.name}: unexpected lookup answer {response.text[:200]}") from exc

    def balance(self, currency: str | None = None) -> Balance:
        try:
            return dvs_shapes.balance_from(_json(self.get("/balances")), currency)
        except dvs_shapes.Unreadable as exc:
            raise ProviderError(f"provider {self.name}: {exc}") from exc


def _json(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None
