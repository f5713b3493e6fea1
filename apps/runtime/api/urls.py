from django.urls import path

from . import schema, views  # noqa: F401  (schema registers the token schemes for OpenAPI)

app_name = "runtime-api"

urlpatterns = [
    path("runs/", views.RunStartApi.as_view(), name="run-start"),
    path("runs/<uuid:run_id>/heartbeat", views.RunHeartbeatApi.as_view(), name="run-heartbeat"),
    path("runs/<uuid:run_id>/finish", views.RunFinishApi.as_view(), name="run-finish"),
    path("decisions/", views.DecisionApi.as_view(), name="decide"),
    path("usage/", views.UsageApi.as_view(), name="usage"),
]
