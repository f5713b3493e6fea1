"""``/api/v1/`` routes of costs (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import views

app_name = "costs-api"

urlpatterns = [
    path("costs/chargeback/", views.ChargebackApi.as_view(), name="chargeback"),
]
