from django.urls import path

from catalog.api import views

urlpatterns = [
    path("products/", views.ProductListApi.as_view(), name="product-list"),
    path("products/<id:pk>/", views.ProductDetailApi.as_view(), name="product-detail"),
    path("operators/", views.OperatorListApi.as_view(), name="operator-list"),
    path("operators/<id:pk>/", views.OperatorDetailApi.as_view(), name="operator-detail"),
    path("quotes/", views.QuoteCreateApi.as_view(), name="quote-create"),
    path("quotes/<id:pk>/", views.QuoteDetailApi.as_view(), name="quote-detail"),
    path("price-rules/", views.PriceRuleListCreateApi.as_view(), name="price-rule-list"),
]
