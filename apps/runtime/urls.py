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
    path("agents/<slug:slug>/budgets/", views.agent_budgets_panel, name="agent-budgets"),
    path("agents/<slug:slug>/budgets/new/", views.budget_create, name="budget-create"),
    path("budgets/<slug:slug>/edit/", views.budget_edit, name="budget-edit"),
    path("budgets/<slug:slug>/enabled/", views.budget_set_enabled, name="budget-set-enabled"),
    path("budgets/<slug:slug>/delete/", views.budget_delete, name="budget-delete"),
    path("department-budgets/", views.department_budgets, name="department-budgets"),
    path("decisions/", views.decision_list, name="decision-list"),
    path("decisions/<int:decision_id>/", views.decision_detail, name="decision-detail"),
    path("delegations/", views.delegation_list, name="delegation-list"),
    path(
        "delegations/<int:delegation_id>/revoke/",
        views.delegation_revoke,
        name="delegation-revoke",
    ),
]
