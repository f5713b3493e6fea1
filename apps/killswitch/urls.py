"""Console URLs of the kill switch, in the ``killswitch`` namespace."""

from django.urls import path

from . import trigger_views, views

app_name = "killswitch"

urlpatterns = [
    path("kill/", views.kill_list, name="list"),
    path("kill/<int:kill_id>/", views.detail, name="detail"),
    path("kill/<int:kill_id>/release/", views.release, name="release"),
    # The automatic triggers (trigger_views.py).
    path("kill/triggers/", trigger_views.trigger_list, name="triggers"),
    path("kill/triggers/<int:rule_id>/", trigger_views.trigger_edit, name="trigger-edit"),
    path(
        "kill/triggers/<int:rule_id>/toggle/", trigger_views.trigger_toggle, name="trigger-toggle"
    ),
    path(
        "kill/triggers/<int:rule_id>/delete/", trigger_views.trigger_delete, name="trigger-delete"
    ),
    # Keep this one last: any other single segment under kill/ must be matched above it.
    path("kill/<str:scope>/", views.confirm, name="confirm"),
]
