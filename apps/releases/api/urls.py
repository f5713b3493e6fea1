"""``/api/v1/agents/<slug>/releases/`` routes (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import views

app_name = "releases-api"

urlpatterns = [
    path("agents/<slug:slug>/releases/", views.DeploymentsApi.as_view(), name="stages"),
    path("agents/<slug:slug>/releases/promote", views.PromoteApi.as_view(), name="promote"),
    path("agents/<slug:slug>/releases/rollback", views.RollbackApi.as_view(), name="rollback"),
]
