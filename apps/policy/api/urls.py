"""``/api/v1/policies/`` routes (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import views

app_name = "policy-api"

urlpatterns = [
    path("policies/", views.PolicyListCreateApi.as_view(), name="policy-list"),
    path("policies/simulate", views.PolicySimulateApi.as_view(), name="policy-simulate"),
    path("policies/<slug:slug>/", views.PolicyDetailUpdateApi.as_view(), name="policy-detail"),
    path(
        "policies/<slug:slug>/versions/",
        views.PolicyVersionListApi.as_view(),
        name="policy-version-list",
    ),
    path(
        "policies/<slug:slug>/versions/<int:number>/",
        views.PolicyVersionDetailApi.as_view(),
        name="policy-version-detail",
    ),
]
