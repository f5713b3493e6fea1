"""``/api/v1/`` routes for people and the organisation (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import schema, views  # noqa: F401  (schema registers the token auth's OpenAPI scheme)

app_name = "accounts-api"

urlpatterns = [
    path("me/", views.MeApi.as_view(), name="me"),
    path("me/tokens/", views.TokenListCreateApi.as_view(), name="token-list"),
    path("me/tokens/<int:token_id>/", views.TokenDetailRevokeApi.as_view(), name="token-detail"),
    path("departments/", views.DepartmentListApi.as_view(), name="department-list"),
    path("departments/<slug:slug>/", views.DepartmentDetailApi.as_view(), name="department-detail"),
]
