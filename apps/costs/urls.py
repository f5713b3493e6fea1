"""Console URLs of costs, in the ``costs`` namespace."""

from django.urls import path

from . import views

app_name = "costs"

urlpatterns = [
    path("costs/prices/", views.prices, name="prices"),
]
