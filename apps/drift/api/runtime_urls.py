"""The agents' drift route, beside the runtime's (``/api/v1/runtime/``): the SDK reaches it
with the run token it already holds."""

from django.urls import path

from . import views

app_name = "drift-runtime-api"

urlpatterns = [
    path("runs/<uuid:run_id>/metrics", views.RunMetricsApi.as_view(), name="run-metrics"),
]
