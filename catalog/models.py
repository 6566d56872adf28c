"""The catalog: what can be sold (countries, operators, products synced from each provider),
how a number finds its operator (numbering prefixes, the provider's lookups), at what price
(price lists and rules) and the price a seller locked (quotes).

Money is an integer count of the smallest unit: a product's cost and every price in the platform
currency (`PLATFORM_CURRENCY`), a destination amount in the destination currency's smallest unit.
History is never rewritten: what a provider changes about a product is a new `ProductVersion`
(`Product.current_version` moves to it), and a quote (later a charge) points at the version it was
sold at."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Country(models.Model):
    iso_code = models.CharField(max_length=3, unique=True)  # ISO 3166-1 alpha-3, as DT One names them
    name = models.CharField(max_length=100)
    dialing_code = models.CharField(max_length=4, blank=True)  # E.164 country calling code, digits only

    class Meta:
        ordering = ["iso_code"]
        verbose_name_plural = "countries"
        constraints = [
            models.CheckConstraint(condition=Q(iso_code__regex=r"^[A-Z]{3}$"), name="country_iso_code_alpha3"),
            models.CheckConstraint(
                condition=Q(dialing_code__regex=r"^([1-9][0-9]{0,3})?$"), name="country_dialing_code"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.iso_code})"


class Operator(models.Model):
    provider = models.CharField(max_length=50)
    provider_operator_id = models.CharField(max_length=64)
    country = models.ForeignKey(Country, on_delete=models.PROTECT, related_name="operators")
    name = models.CharField(max_length=200)
    # An admin's switch; a sync never turns it back on.
    enabled = models.BooleanField(default=True)
    # Set when a sync no longer sees the operator; cleared when it reappears.
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["country_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_operator_id"], name="operator_unique_provider_id"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}:{self.provider_operator_id})"


class NumberingPrefix(models.Model):
    """A range of mobile numbers (E.164 digits without `+`) an operator serves: the longest
    prefix of a number wins."""

    operator = models.ForeignKey(Operator, on_delete=models.CASCADE, related_name="prefixes")
    prefix = models.CharField(max_length=15)

    class Meta:
        ordering = ["prefix"]
        constraints = [
            models.UniqueConstraint(fields=["operator", "prefix"], name="prefix_unique_per_operator"),
            models.CheckConstraint(condition=Q(prefix__regex=r"^[1-9][0-9]{1,14}$"), name="prefix_e164_digits"),
        ]
        indexes = [models.Index(fields=["prefix"], name="catalog_prefix_idx")]

    def __str__(self) -> str:
        return f"+{self.prefix} → {self.operator_id}"


class ProductKind(models.TextChoices):
    FIXED = "fixed"  # one denomination (DT One FIXED_VALUE_RECHARGE / FIXED_VALUE_PIN_PURCHASE)
    RANGED = "ranged"  # any amount between min and max (RANGED_VALUE_RECHARGE)


class ProductService(models.TextChoices):
    AIRTIME = "airtime"
    DATA = "data"  # a data bundle: `description`, `validity` and `benefits` say what it holds


class Product(models.Model):
    """A provider's product, by its id there. What it sells and costs is its current version."""

    provider = models.CharField(max_length=50)
    provider_product_id = models.CharField(max_length=64)
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="products")
    name = models.CharField(max_length=200)
    current_version = models.OneToOneField(
        "ProductVersion", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    enabled = models.BooleanField(default=True)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["operator_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_product_id"], name="product_unique_provider_id"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}:{self.provider_product_id})"


class ProductVersion(models.Model):
    """What a product is and costs from `effective_from` until its product's next version. Never
    updated: a sync that sees a difference inserts a new one.

    Cost in the platform currency's smallest unit. Fixed: `cost` for its one `amount`. Ranged:
    delivering `d` destination units costs `cost + ceil(d * cost_rate)` (`cost` is the provider's
    fee per top-up, usually 0; `cost_rate` the platform units per destination unit, an exact
    decimal derived from the provider's wholesale rate), `catalog.pricing.product_cost`."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="versions")
    kind = models.CharField(max_length=10, choices=ProductKind.choices)
    service = models.CharField(max_length=10, choices=ProductService.choices)
    provider_type = models.CharField(max_length=40)  # the provider's own word, e.g. FIXED_VALUE_RECHARGE
    destination_currency = models.CharField(max_length=3)
    amount = models.BigIntegerField(null=True, blank=True)
    min_amount = models.BigIntegerField(null=True, blank=True)
    max_amount = models.BigIntegerField(null=True, blank=True)
    # Ranged: the amounts sold are min_amount + k * amount_step (DT One's `increment`); null: any.
    amount_step = models.BigIntegerField(null=True, blank=True)
    cost = models.BigIntegerField()
    cost_rate = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    # The face value in the platform currency: the provider's retail price (fixed) or retail rate
    # (ranged, platform units per destination unit), what a discount rule is taken off.
    retail_price = models.BigIntegerField(null=True, blank=True)
    retail_rate = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    description = models.CharField(max_length=500, blank=True)
    validity = models.CharField(max_length=50, blank=True)  # e.g. "30 DAY"
    benefits = models.JSONField(default=list, blank=True)
    # A digest of the fields above: a sync compares it to tell a change from a repeat.
    fingerprint = models.CharField(max_length=64)
    effective_from = models.DateTimeField()

    class Meta:
        ordering = ["product_id", "effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(
                        kind="fixed",
                        amount__gt=0,
                        min_amount__isnull=True,
                        max_amount__isnull=True,
                        cost_rate__isnull=True,
                        retail_rate__isnull=True,
                        amount_step__isnull=True,
                    )
                    | Q(
                        kind="ranged",
                        amount__isnull=True,
                        min_amount__gt=0,
                        max_amount__gte=F("min_amount"),
                        cost_rate__gt=0,
                        retail_price__isnull=True,
                    )
                    & (Q(amount_step__isnull=True) | Q(amount_step__gt=0))
                ),
                name="product_version_fixed_or_ranged",
            ),
            models.CheckConstraint(condition=Q(cost__gte=0), name="product_version_cost_non_negative"),
            models.CheckConstraint(condition=Q(kind__in=ProductKind.values), name="product_version_kind"),
            models.CheckConstraint(condition=Q(service__in=ProductService.values), name="product_version_service"),
            models.UniqueConstraint(fields=["product", "effective_from"], name="product_version_unique_start"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} v{self.pk} from {self.effective_from:%Y-%m-%d %H:%M}"


class ProductRoute(models.Model):
    """One provider that can deliver a product we sell: its own product there (`served_by`, whose
    `provider` names the configured provider) and its priority, lowest first. A charge goes to the
    product's first route and moves to the next only when a provider refused it before processing
    (ledger/fulfilment/routing.py); each provider's cost is its product's current version's. A
    product without routes is served by its own provider (or the default one)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="routes")
    served_by = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="serves")
    priority = models.PositiveSmallIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id", "priority"]
        constraints = [
            models.UniqueConstraint(fields=["product", "served_by"], name="product_route_unique_provider_product"),
            models.UniqueConstraint(fields=["product", "priority"], name="product_route_unique_priority"),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} → {self.served_by_id} (priority {self.priority})"

    def clean(self) -> None:
        """An admin's route must name a configured provider's product that delivers what the sold
        product delivers: the same destination currency and kind of amount."""
        from django.core.exceptions import ValidationError

        from providers import provider_names

        if not (self.product_id and self.served_by_id):
            return
        if self.served_by.provider not in provider_names():
            raise ValidationError({"served_by": f"provider {self.served_by.provider!r} is not configured"})
        sold, served = self.product.current_version, self.served_by.current_version
        if sold is None or served is None:
            raise ValidationError("both products need a current version")
        if (sold.destination_currency, sold.kind) != (served.destination_currency, served.kind):
            raise ValidationError({"served_by": "delivers another currency or kind of amount than the product"})
        if sold.kind == ProductKind.FIXED and sold.amount != served.amount:
            raise ValidationError({"served_by": "delivers another amount than the product"})


class NumberLookup(models.Model):
    """The provider's answer for a number (its lookup, run by a worker), kept until `expires_at`."""

    msisdn = models.CharField(max_length=16)
    provider = models.CharField(max_length=50)
    operator = models.ForeignKey(Operator, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    looked_up_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "msisdn"], name="number_lookup_unique"),
        ]
        # A charge reads a number's answers by the number alone (catalog.selectors._fresh_lookups).
        indexes = [models.Index(fields=["msisdn", "-looked_up_at"], name="number_lookup_msisdn_idx")]

    def __str__(self) -> str:
        return f"{self.msisdn} → {self.operator_id}"


class PriceList(models.Model):
    """A set of rules. The default list (`is_default`, exactly one may exist) prices every seller;
    a seller's own list (`seller`) is consulted first, rule by rule."""

    name = models.CharField(max_length=100)
    is_default = models.BooleanField(default=False)
    seller = models.OneToOneField(
        "core.Seller", on_delete=models.PROTECT, null=True, blank=True, related_name="price_list"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="price_list_one_default"),
            models.CheckConstraint(
                condition=Q(is_default=True, seller__isnull=True) | Q(is_default=False, seller__isnull=False),
                name="price_list_default_xor_seller",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RuleMethod(models.TextChoices):
    DISCOUNT = "discount"  # price = face value less `basis_points` / 10,000 of it
    MARKUP = "markup"  # price = cost plus `basis_points` / 10,000 of it


class PriceRule(models.Model):
    """One rule of a list, for one product or one operator's products, from `effective_from`.
    Never edited once in force: a new rule with a later `effective_from` replaces it."""

    price_list = models.ForeignKey(PriceList, on_delete=models.PROTECT, related_name="rules")
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    method = models.CharField(max_length=10, choices=RuleMethod.choices)
    basis_points = models.IntegerField()
    # A price below the provider's cost is refused unless an admin set this.
    allow_below_cost = models.BooleanField(default=False)
    effective_from = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["price_list_id", "-effective_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(operator__isnull=True, product__isnull=False)
                | Q(operator__isnull=False, product__isnull=True),
                name="price_rule_operator_xor_product",
            ),
            models.CheckConstraint(condition=Q(method__in=RuleMethod.values), name="price_rule_method"),
            models.CheckConstraint(
                condition=Q(basis_points__gte=0, basis_points__lte=100_000), name="price_rule_basis_points_range"
            ),
        ]
        indexes = [
            models.Index(fields=["price_list", "product", "effective_from"], name="price_rule_product_idx"),
            models.Index(fields=["price_list", "operator", "effective_from"], name="price_rule_operator_idx"),
        ]

    def __str__(self) -> str:
        target = f"product {self.product_id}" if self.product_id else f"operator {self.operator_id}"
        return f"{self.method} {self.basis_points}bp on {target} from {self.effective_from:%Y-%m-%d}"


class Quote(models.Model):
    """A price locked for one seller, number and product version until `expires_at`. A charge
    uses it at most once: one conditional update sets `used_at`, and the charge's `quote` is
    unique."""

    seller = models.ForeignKey("core.Seller", on_delete=models.PROTECT, related_name="quotes")
    msisdn = models.CharField(max_length=16)
    operator = models.ForeignKey(Operator, on_delete=models.PROTECT, related_name="+")
    product_version = models.ForeignKey(ProductVersion, on_delete=models.PROTECT, related_name="quotes")
    rule = models.ForeignKey(PriceRule, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    destination_amount = models.BigIntegerField()
    price = models.BigIntegerField()
    cost = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)  # the charge that used it: `charge` (ledger.Charge.quote)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gt=0, destination_amount__gt=0, cost__gte=0), name="quote_amounts"
            ),
        ]
        indexes = [models.Index(fields=["seller", "created_at"], name="quote_seller_created_idx")]

    def __str__(self) -> str:
        return f"quote {self.pk} for seller {self.seller_id}"
