"""Approval API: ``/api/v1/approvals/...``."""

from django.urls import path

from . import views

urlpatterns: list = [
    # The agent's side (waiting for an outcome) below.
    path("<uuid:approval_id>/", views.ApprovalStateApi.as_view(), name="approval-state"),
    path("<uuid:approval_id>/wait/", views.approval_wait, name="approval-wait"),
]
