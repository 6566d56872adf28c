"""The sandbox's product catalog, in DT One DVS's shape (docs/provider.md, "The catalog"): loaded
from a JSON file (the shipped `catalog.json` unless `--catalog` names another), paged as DVS pages
(`page`, `per_page`, `X-Total` ...), and a mobile-number lookup by the operators' numbering prefixes.

`numbering_prefixes` on an operator and `calling_code` on a country are the sandbox's own
additions: DVS publishes neither (it answers lookups instead)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

SHIPPED = Path(__file__).with_name("catalog.json")
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 50


class CatalogError(ValueError):
    pass


class Catalog:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else SHIPPED
        self.reset()

    def reset(self) -> None:
        data = json.loads(self.path.read_text())
        self.load(data)

    def load(self, data: dict) -> None:
        if not isinstance(data, dict) or not all(
            isinstance(data.get(k), list) for k in ("countries", "operators", "products")
        ):
            raise CatalogError("a catalog is {countries: [...], operators: [...], products: [...]}")
        self.countries, self.operators, self.products = data["countries"], data["operators"], data["products"]
        self._prefixes = sorted(
            ((prefix, operator) for operator in self.operators for prefix in operator.get("numbering_prefixes", [])),
            key=lambda item: -len(item[0]),
        )
        self._products = {item.get("id"): item for item in self.products if isinstance(item, dict)}
        self.version = getattr(self, "version", 0) + 1  # views built from the catalog rebuild on a change

    def product(self, product_id: int) -> dict | None:
        return self._products.get(product_id)

    def identified(self, msisdn: str) -> dict | None:
        """The operator whose numbering prefix matches the number longest."""
        digits = msisdn.removeprefix("+")
        return next((operator for prefix, operator in self._prefixes if digits.startswith(prefix)), None)

    def dump(self) -> dict:
        return copy.deepcopy({"countries": self.countries, "operators": self.operators, "products": self.products})

    def lookup(self, msisdn: str) -> list[dict]:
        """Every operator of the number's country, the one whose prefix matches longest marked
        `identified`; no operator matches: an empty list."""
        found = self.identified(msisdn)
        if found is None:
            return []
        country = found["country"]["iso_code"]
        return [
            {key: operator[key] for key in ("id", "name", "country", "regions")} | {"identified": operator is found}
            for operator in self.operators
            if operator["country"]["iso_code"] == country
        ]


def page_of(items: list, query: dict) -> tuple[list, list[tuple[str, str]]]:
    """DVS paging: `page` from 1, `per_page` up to 100; the totals and neighbours in headers."""
    page = positive(query, "page", 1)
    per_page = min(positive(query, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
    total = len(items)
    pages = max(1, math.ceil(total / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = [
        ("x-total", str(total)),
        ("x-total-pages", str(pages)),
        ("x-per-page", str(per_page)),
        ("x-page", str(page)),
        ("x-next-page", str(page + 1) if page < pages else ""),
        ("x-prev-page", str(page - 1) if page > 1 else ""),
    ]
    return chunk, headers


def positive(query: dict, name: str, default: int) -> int:
    raw = query.get(name, [None])[0]
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise CatalogError(f"{name}: a positive integer is expected")
    return int(raw)


def filtered(items: list, query: dict) -> list:
    """DVS's product filters the sandbox honours: `type`, `country_iso_code`, `operator_id`."""
    wanted_type = query.get("type", [None])[0]
    country = query.get("country_iso_code", [None])[0]
    operator_id = query.get("operator_id", [None])[0]
    result = items
    if wanted_type:
        result = [item for item in result if item.get("type") == wanted_type]
    if country:
        result = [item for item in result if _country_of(item) == country]
    if operator_id:
        result = [item for item in result if str(item.get("operator", {}).get("id", item.get("id"))) == operator_id]
    return result


def _country_of(item: dict) -> str | None:
    if "operator" in item:
        return item["operator"]["country"]["iso_code"]
    if "country" in item:
        return item["country"]["iso_code"]
    return item.get("iso_code")
