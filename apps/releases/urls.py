"""Console URLs of releases, in the ``releases`` namespace."""

from django.urls import path

from . import views

app_name = "releases"

urlpatterns = [
    path("agents/<slug:slug>/releases/", views.agent_releases, name="agent"),
    path("agents/<slug:slug>/releases/promote", views.promote, name="promote"),
    path("agents/<slug:slug>/releases/rollback", views.rollback, name="rollback"),
    path("agents/<slug:slug>/versions/compare/", views.compare, name="compare"),
]
