"""``/api/v1/`` routes of the trace fabric (mounted by ``controlplane/api_urls.py``)."""

from django.urls import path

from . import views

app_name = "traces-api"

urlpatterns = [
    path("runs/<uuid:run_id>/timeline/", views.RunTimelineApi.as_view(), name="run-timeline"),
]
