from django.urls import path

from ledger.api import batches, export, provider, reports, statements, views

urlpatterns = [
    path("me/", views.MeApi.as_view(), name="me"),
    path("sellers/", views.SellerListCreateApi.as_view(), name="seller-list"),
    path("sellers/<id:pk>/", views.SellerDetailApi.as_view(), name="seller-detail"),
    path("sellers/<id:pk>/reconcile/", views.SellerReconcileApi.as_view(), name="seller-reconcile"),
    path("deposits/", views.DepositListCreateApi.as_view(), name="deposit-list"),
    path("deposits/<id:pk>/", views.DepositDetailApi.as_view(), name="deposit-detail"),
    path("deposits/<id:pk>/approve/", views.DepositApproveApi.as_view(), name="deposit-approve"),
    path("deposits/<id:pk>/reject/", views.DepositRejectApi.as_view(), name="deposit-reject"),
    path("charges/", views.ChargeListCreateApi.as_view(), name="charge-list"),
    path("charges/<id:pk>/", views.ChargeDetailApi.as_view(), name="charge-detail"),
    path("charge-batches/", batches.ChargeBatchListCreateApi.as_view(), name="charge-batch-list"),
    path("charge-batches/<id:pk>/", batches.ChargeBatchDetailApi.as_view(), name="charge-batch-detail"),
    path("charge-batches/<id:pk>/results/", batches.ChargeBatchResultsApi.as_view(), name="charge-batch-results"),
    path("provider/callbacks/", provider.ProviderCallbackApi.as_view(), name="provider-callbacks"),
    path("transactions/", views.TransactionListApi.as_view(), name="transaction-list"),
    path("transactions/export/", export.TransactionExportApi.as_view(), name="transaction-export"),
    path("reports/margin/", reports.MarginReportApi.as_view(), name="margin-report"),
    path("balance/", statements.BalanceAtApi.as_view(), name="balance-at"),
    path("checkpoints/", statements.CheckpointListApi.as_view(), name="checkpoint-list"),
    path("statements/public-key/", statements.PublicKeyApi.as_view(), name="statement-public-key"),
    path("statements/", statements.StatementListCreateApi.as_view(), name="statement-list"),
    path("statements/<id:pk>/", statements.StatementDetailApi.as_view(), name="statement-detail"),
    path(
        "statements/<id:pk>/download/<str:fmt>/", statements.StatementDownloadApi.as_view(), name="statement-download"
    ),
]
