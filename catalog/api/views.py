"""The catalog API: what a seller can sell to a number and at what price, quotes, and the admins'
switches and price rules (docs/api.md, "Catalog, prices and quotes"). Sellers never see the
platform's cost; staff do."""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import pricing, selectors
from catalog.api import serializers as s
from catalog.models import Operator, PriceRule, Product, ProductKind
from catalog.selectors import PriceBook, ResolvedOperator
from catalog.services import prices, quotes, switches
from catalog.tasks import lookup_number_on_commit
from core.errors import NotFoundError
from core.models import Seller
from core.permissions import IsAdmin, IsSeller, IsSellerOrStaffReader, IsStaffReader
from core.roles import seller_of


def _product_row(product: Product, book: PriceBook, *, staff: bool) -> dict:
    version = product.current_version
    row = {
        "id": product.pk,
        "name": product.name,
        "operator": product.operator_id,
        "kind": version.kind,
        "service": version.service,
        "destination_currency": version.destination_currency,
        "amount": version.amount,
        "min_amount": version.min_amount,
        "max_amount": version.max_amount,
        "amount_step": version.amount_step,
        "description": version.description,
        "validity": version.validity,
        "currency": settings.PLATFORM_CURRENCY,
        "price": None,
        "price_min": None,
        "price_max": None,
        "enabled": product.enabled,
    }
    if version.kind == ProductKind.FIXED:
        price = book.price(product, version, version.amount)
        row["price"] = price and price.price
        if staff:
            row["cost"] = version.cost
    else:
        low, high = book.price(product, version, version.min_amount), book.price(product, version, version.max_amount)
        row["price_min"], row["price_max"] = low and low.price, high and high.price
        if staff:
            row["cost_min"] = pricing.product_cost(version, version.min_amount)
            row["cost_max"] = pricing.product_cost(version, version.max_amount)
    return row


class ProductListApi(APIView):
    permission_classes = [IsSellerOrStaffReader]

    @extend_schema(parameters=[s.ProductsQuery], responses=s.ProductListOutput)
    def get(self, request):
        query = s.ProductsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        seller = seller_of(request.user)
        staff = seller is None
        if staff and "seller" in params:
            seller = Seller.objects.filter(pk=params["seller"]).first()
            if seller is None:
                raise NotFoundError()
        phone = params.get("phone_number")
        if phone:
            resolved = selectors.operator_for_number(msisdn=phone, operator_id=params.get("operator"))
        elif staff and "operator" in params:
            operator = Operator.objects.select_related("country").filter(pk=params["operator"]).first()
            if operator is None:
                raise NotFoundError()
            resolved = ResolvedOperator(operator, "explicit")
        else:
            raise serializers.ValidationError({"phone_number": ["This field is required."]})
        if staff:  # staff see the operator's disabled products too, to switch them back on
            products = list(
                Product.objects.filter(
                    operator=resolved.operator, withdrawn_at__isnull=True, current_version__isnull=False
                )
                .select_related("current_version")
                .order_by("id")
            )
        else:
            products = selectors.products_on_sale(operator=resolved.operator)
        book = PriceBook(seller=seller, products=products)
        rows = [_product_row(product, book, staff=staff) for product in products]
        if not staff:  # a product without a price for this seller is not for sale to it
            rows = [row for row in rows if row["price"] is not None or row["price_min"] is not None]
        operator = resolved.operator
        body = {
            "phone_number": phone,
            "operator": {
                "id": operator.pk,
                "name": operator.name,
                "country": operator.country.iso_code,
                "source": resolved.source,
            },
            "results": rows,
        }
        return Response(s.ProductListOutput(body).data)


class ProductDetailApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(request=s.EnabledInput, responses=s.EnabledInput)
    def patch(self, request, pk):
        data = s.EnabledInput(data=request.data)
        data.is_valid(raise_exception=True)
        product = switches.product_set_enabled(product_id=pk, enabled=data.validated_data["enabled"])
        return Response({"id": product.pk, "enabled": product.enabled})


class OperatorListApi(ListAPIView):
    permission_classes = [IsSellerOrStaffReader]
    serializer_class = s.OperatorOutput

    @extend_schema(parameters=[OpenApiParameter("country", str, description="ISO 3166-1 alpha-3")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        queryset = Operator.objects.select_related("country").order_by("country__iso_code", "name", "id")
        if seller_of(self.request.user) is not None:
            queryset = queryset.filter(selectors.ON_SALE)
        country = self.request.query_params.get("country")
        if country:
            queryset = queryset.filter(country__iso_code=country.upper()[:3])
        return queryset


class OperatorDetailApi(APIView):
    permission_classes = [IsAdmin]

    @extend_schema(request=s.EnabledInput, responses=s.OperatorOutput)
    def patch(self, request, pk):
        data = s.EnabledInput(data=request.data)
        data.is_valid(raise_exception=True)
        operator = switches.operator_set_enabled(operator_id=pk, enabled=data.validated_data["enabled"])
        return Response(s.OperatorOutput(operator).data)


class QuoteCreateApi(APIView):
    permission_classes = [IsSeller]

    @extend_schema(request=s.QuoteCreateInput, responses={201: s.QuoteOutput})
    def post(self, request):
        data = s.QuoteCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        quote = quotes.quote_create(
            seller=seller_of(request.user),
            msisdn=params["phone_number"],
            product_id=params["product"],
            amount=params.get("amount"),
            operator_id=params.get("operator"),
        )
        if "operator" not in params and selectors.number_lookup_due(msisdn=quote.msisdn):
            lookup_number_on_commit(quote.msisdn)  # the provider confirms the operator for next time
        return Response(s.QuoteOutput(quote).data, status=status.HTTP_201_CREATED)


class QuoteDetailApi(APIView):
    permission_classes = [IsSeller]

    @extend_schema(responses=s.QuoteOutput)
    def get(self, request, pk):
        return Response(s.QuoteOutput(quotes.quote_get(seller=seller_of(request.user), quote_id=pk)).data)


class PriceRuleListCreateApi(ListAPIView):
    serializer_class = s.PriceRuleOutput

    def get_permissions(self):
        return [IsStaffReader()] if self.request.method == "GET" else [IsAdmin()]

    @extend_schema(parameters=[OpenApiParameter("seller", int, description="a seller's own rules")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        queryset = PriceRule.objects.select_related("price_list").order_by("-id")
        seller = self.request.query_params.get("seller")
        if seller and seller.isdecimal() and len(seller) < 19:
            queryset = queryset.filter(price_list__seller_id=int(seller))
        return queryset

    @extend_schema(request=s.PriceRuleInput, responses={201: s.PriceRuleOutput})
    def post(self, request):
        data = s.PriceRuleInput(data=request.data)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        if params.get("seller"):
            seller = Seller.objects.filter(pk=params["seller"]).first()
            if seller is None:
                raise serializers.ValidationError({"seller": ["No such seller."]})
            price_list = prices.price_list_for_seller(seller=seller)
        else:
            price_list = prices.price_list_default()
        operator = product = None
        if "operator" in params:
            operator = Operator.objects.filter(pk=params["operator"]).first()
            if operator is None:
                raise serializers.ValidationError({"operator": ["No such operator."]})
        else:
            product = Product.objects.select_related("current_version").filter(pk=params["product"]).first()
            if product is None:
                raise serializers.ValidationError({"product": ["No such product."]})
        rule = prices.price_rule_create(
            price_list=price_list,
            operator=operator,
            product=product,
            method=params["method"],
            basis_points=params["basis_points"],
            effective_from=params.get("effective_from"),
            allow_below_cost=params["allow_below_cost"],
            created_by=request.user,
        )
        return Response(s.PriceRuleOutput(rule).data, status=status.HTTP_201_CREATED)
