"""DT One DVS's discovery and account reads, for any adapter that talks to a DVS-shaped API (the DVS
adapter, and the sandbox's own dialect, which serves its catalog in DVS's shape): countries,
operators and products page after page, a mobile-number lookup, a product by id, balances.
Reading each object is providers/dtone_catalog.py's and providers/dvs_shapes.py's."""

from collections.abc import Iterator

from providers import dtone_catalog, dvs_shapes, http
from providers.base import (
    Balance,
    CatalogCountry,
    CatalogOperator,
    CatalogProduct,
    NumberOperator,
    ProviderError,
    UnreadableProduct,
)

CATALOG_PAGE = 100  # DVS's largest per_page


class DvsDiscovery:
    """`root` is the API's versioned root (`https://dvs-api.dtone.com/v1`, the sandbox's `.../v1`)."""

    def __init__(self, *, client: http.Client, root: str, name: str):
        self.client, self.root, self.name = client, root, name

    def get(self, path: str, params: dict | None = None, *, missing_ok: bool = False) -> http.Response | None:
        """A 200 answer, or None for a 404 when `missing_ok`; raises ProviderError otherwise."""
        try:
            response = self.client.request("GET", f"{self.root}{path}", params=params)
        except http.RequestFailed as exc:
            raise ProviderError(f"provider {self.name} unreachable: {exc}") from exc
        if missing_ok and response.status == 404 and dvs_shapes.error_codes(_json(response)):
            return None
        if response.status != 200:
            raise ProviderError(f"provider {self.name}: HTTP {response.status} for {path}")
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
            response = self.client.request("POST", f"{self.root}/lookup/mobile-number", json={"mobile_number": msisdn})
        except http.RequestFailed as exc:
            raise ProviderError(f"provider {self.name} unreachable: {exc}") from exc
        if response.status != 200:
            raise ProviderError(f"provider {self.name}: HTTP {response.status} for a number lookup")
        try:
            return [dtone_catalog.lookup_from(item) for item in response.json()]
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"provider {self.name}: unexpected lookup answer {http.text(response, 200)}") from exc

    def balance(self, currency: str | None = None) -> Balance:
        try:
            return dvs_shapes.balance_from(_json(self.get("/balances")), currency)
        except dvs_shapes.Unreadable as exc:
            raise ProviderError(f"provider {self.name}: {exc}") from exc


def _json(response: http.Response):
    try:
        return response.json()
    except ValueError:
        return None
