"""Console URLs of costs, in the ``costs`` namespace."""

from django.urls import path

from . import views

app_name = "costs"

urlpatterns = [
    path("costs/", views.finance, name="finance"),
    path("costs/agents/<slug:slug>/", views.agent_costs, name="agent"),
    path("costs/chargeback/", views.chargeback, name="chargeback"),
    path("costs/prices/", views.prices, name="prices"),
]
