"""Console URLs of releases, in the ``releases`` namespace."""

from django.urls import path

from . import views

app_name = "releases"

urlpatterns = [
    path("agents/<slug:slug>/releases/", views.agent_releases, name="agent"),
    path("agents/<slug:slug>/releases/promote", views.promote, name="promote"),
    path("agents/<slug:slug>/releases/rollback", views.rollback, name="rollback"),
    path("agents/<slug:slug>/versions/compare/", views.compare, name="compare"),
    path("agents/<slug:slug>/releases/suites/", views.suites, name="suites"),
    path("agents/<slug:slug>/releases/suites/<slug:suite>/", views.suite_detail, name="suite"),
    path(
        "agents/<slug:slug>/releases/suites/<slug:suite>/evaluate",
        views.suite_evaluate,
        name="suite-evaluate",
    ),
    path(
        "agents/<slug:slug>/releases/suites/<slug:suite>/delete",
        views.suite_delete,
        name="suite-delete",
    ),
]
