"""The catalog's domain errors: a stable `code` and an HTTP status each (core/errors.py renders them)."""

from rest_framework import status

from core.errors import DomainError


class NoOperatorError(DomainError):
    code = "no_operator"
    default_detail = "No operator we sell for serves this number."


class OperatorMismatchError(DomainError):
    code = "operator_mismatch"
    default_detail = "The operator named does not serve numbers of this country."


class UnknownOperatorError(DomainError):
    code = "unknown_operator"
    default_detail = "No operator with this id is on sale."


class ProductUnavailableError(DomainError):
    code = "product_unavailable"
    default_detail = "This product is not on sale for this number."


class AmountNotOfferedError(DomainError):
    code = "amount_not_offered"
    default_detail = "This product does not sell this amount."


class NoProductError(DomainError):
    """No airtime product of the number's operator sells this amount; the body lists what would:
    `amounts` (fixed denominations) and `ranges` (`min`, `max`, `step`), in `destination_currency`."""

    code = "no_product"
    default_detail = "No product of this number's operator sells this amount."


class ProductRequiredError(DomainError):
    code = "product_required"
    default_detail = "Name a product, or an amount to find the product that sells it."


class NoPriceError(DomainError):
    code = "no_price"
    default_detail = "This product has no price for you now."


class BelowCostError(DomainError):
    code = "below_cost"
    default_detail = "The rule prices products below their cost; an admin must allow it explicitly."


class QuoteExpiredError(DomainError):
    code = "quote_expired"
    http_status = status.HTTP_409_CONFLICT
    default_detail = "This quote has expired; ask for a new one."


class QuoteUsedError(DomainError):
    code = "quote_used"
    http_status = status.HTTP_409_CONFLICT
    default_detail = "This quote was already used."
