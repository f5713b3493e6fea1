"""Console URLs of approval gates, in the ``approvals`` namespace."""

from django.urls import path

from . import channel_views, views

app_name = "approvals"

urlpatterns = [
    path("approvals/", views.inbox, name="inbox"),
    path("approvals/bulk-approve/", views.bulk_approve, name="bulk-approve"),
    path("approvals/gates/", views.gates, name="gates"),
    path("approvals/delegations/", views.delegations, name="delegations"),
    path(
        "approvals/delegations/<int:delegation_id>/revoke/",
        views.delegation_revoke,
        name="delegation-revoke",
    ),
    path("approvals/<uuid:approval_id>/", views.detail, name="detail"),
    path("approvals/<uuid:approval_id>/answer/", views.answer, name="answer"),
    # Notification channels (apps/approvals/channel_views.py) below.
    path("approvals/channels/", channel_views.channels, name="channels"),
    path(
        "approvals/channels/<int:channel_id>/toggle/",
        channel_views.channel_toggle,
        name="channel-toggle",
    ),
    path(
        "approvals/channels/<int:channel_id>/delete/",
        channel_views.channel_delete,
        name="channel-delete",
    ),
    path(
        "approvals/channels/<int:channel_id>/test/",
        channel_views.channel_test,
        name="channel-test",
    ),
]
