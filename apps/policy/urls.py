"""Console URLs of policies, mounted at ``/policies/`` in the ``policy`` namespace."""

from django.urls import path

from . import views

app_name = "policy"

urlpatterns = [
    path("", views.policy_list, name="list"),
    path("new/", views.policy_create, name="create"),
    path("try/", views.policy_try, name="try"),
    path("try/resource/", views.policy_try_resources, name="try-resource"),
    path("effective/", views.policy_effective, name="effective"),
    path("<slug:slug>/", views.policy_detail, name="detail"),
    path("<slug:slug>/edit/", views.policy_edit, name="edit"),
    path("<slug:slug>/toggle/", views.policy_toggle, name="toggle"),
    path("<slug:slug>/diff/", views.policy_diff, name="diff"),
]
