"""Approval API: ``/api/v1/approvals/...``."""

from django.urls import path

from . import people, views

urlpatterns: list = [
    # The approvers' side: their inbox and their answers (personal token or session).
    path("inbox/", people.InboxApi.as_view(), name="approval-inbox"),
    path("<uuid:approval_id>/answer/", people.AnswerApi.as_view(), name="approval-answer"),
    # The agent's side (waiting for an outcome) below.
    path("<uuid:approval_id>/", views.ApprovalStateApi.as_view(), name="approval-state"),
    path("<uuid:approval_id>/wait/", views.approval_wait, name="approval-wait"),
]
