"""Console URLs of the runtime, in the ``runtime`` namespace (e.g. ``runtime:decision-list``)."""

from django.urls import path

from . import views

app_name = "runtime"

urlpatterns = [
    path(
        "agents/<slug:slug>/credentials/new/",
        views.credential_issue,
        name="credential-issue",
    ),
    path(
        "agents/<slug:slug>/credentials/<int:credential_id>/rotate/",
        views.credential_rotate,
        name="credential-rotate",
    ),
    path(
        "agents/<slug:slug>/credentials/<int:credential_id>/revoke/",
        views.credential_revoke,
        name="credential-revoke",
    ),
    path("decisions/", views.decision_list, name="decision-list"),
    path("decisions/<int:decision_id>/", views.decision_detail, name="decision-detail"),
    path("delegations/", views.delegation_list, name="delegation-list"),
    path(
        "delegations/<int:delegation_id>/revoke/",
        views.delegation_revoke,
        name="delegation-revoke",
    ),
]
