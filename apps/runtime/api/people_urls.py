from django.urls import path

from . import people

app_name = "runtime-people-api"

urlpatterns = [
    path(
        "agents/<slug:slug>/credentials/",
        people.CredentialListIssueApi.as_view(),
        name="credential-list",
    ),
    path(
        "agents/<slug:slug>/credentials/<int:credential_id>/",
        people.CredentialRevokeApi.as_view(),
        name="credential-detail",
    ),
    path(
        "agents/<slug:slug>/credentials/<int:credential_id>/rotate",
        people.CredentialRotateApi.as_view(),
        name="credential-rotate",
    ),
    path("budgets/", people.BudgetListCreateApi.as_view(), name="budget-list"),
    path("budgets/<slug:slug>/", people.BudgetDetailApi.as_view(), name="budget-detail"),
    path("me/delegations/", people.DelegationListCreateApi.as_view(), name="delegation-list"),
    path(
        "me/delegations/<int:delegation_id>/",
        people.DelegationRevokeApi.as_view(),
        name="delegation-detail",
    ),
]
