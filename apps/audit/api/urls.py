"""``/api/v1/audit/`` routes (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import views

app_name = "audit-api"

urlpatterns = [
    path("audit/chain/", views.ChainStatusApi.as_view(), name="chain"),
    path(
        "audit/chain/verifications/",
        views.VerificationListCreateApi.as_view(),
        name="verification-list",
    ),
    path(
        "audit/chain/verifications/<int:verification_id>/",
        views.VerificationDetailApi.as_view(),
        name="verification-detail",
    ),
    path("audit/export/", views.ExportApi.as_view(), name="export"),
]
