"""DT One-shaped discovery, served by the sandbox's own dialect (/v1) and the DVS dialect (/dvs/v1)
alike: the product, operator and country lists (paged), a product by id and the mobile-number
lookup. Each dialect passes its own `error(status, detail)` for what it refuses."""

import re
from urllib.parse import unquote

from provider_sandbox.catalog import CatalogError, filtered, page_of

MSISDN = re.compile(r"\+[1-9][0-9]{7,14}")
LISTS = {"products": "products", "operators": "operators", "countries": "countries"}
_LOOKUP = re.compile(r"lookup/mobile-number(?:/([^/]+))?")
_PRODUCT = re.compile(r"products/([0-9]{1,18})")


def serves(rest: str) -> bool:
    """Whether the path after the version prefix (`products`, `lookup/mobile-number/...`) is discovery."""
    return rest in LISTS or bool(_LOOKUP.fullmatch(rest) or _PRODUCT.fullmatch(rest))


def allowed(rest: str) -> tuple[str, ...]:
    lookup = _LOOKUP.fullmatch(rest)
    return ("POST",) if lookup and lookup[1] is None else ("GET",)


async def answer(app, rest: str, query: dict, receive, error) -> tuple[int, list | dict, list]:
    if lookup := _LOOKUP.fullmatch(rest):
        if lookup[1] is None:
            body = await app.json_body(receive, error=lambda detail: error(400, detail))
            msisdn = body.get("mobile_number") if isinstance(body, dict) else None
        else:
            msisdn = unquote(lookup[1])
        if not isinstance(msisdn, str) or not MSISDN.fullmatch(msisdn):
            raise error(400, "mobile_number: an E.164 number such as +989121234567 is required")
        return 200, app.catalog.lookup(msisdn), []
    if product := _PRODUCT.fullmatch(rest):
        found = app.catalog.product(int(product[1]))
        if found is None:
            raise error(404, "product not found")
        return 200, found, []
    try:
        items, headers = page_of(filtered(getattr(app.catalog, LISTS[rest]), query), query)
    except CatalogError as exc:
        raise error(400, str(exc)) from None
    return 200, items, headers
