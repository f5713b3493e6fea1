"""``/api/v1/drift/`` routes (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import views

app_name = "drift-api"

urlpatterns = [
    path("drift/alerts/", views.AlertListApi.as_view(), name="alert-list"),
    path("drift/alerts/<int:alert_id>/", views.AlertDetailApi.as_view(), name="alert-detail"),
    *[
        path(
            f"drift/alerts/<int:alert_id>/{action}",
            views.AlertActionApi.as_view(action_name=action),
            name=f"alert-{action}",
        )
        for action in ("acknowledge", "snooze", "resolve")
    ],
]
