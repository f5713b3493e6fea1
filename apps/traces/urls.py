from django.urls import path

from . import views

app_name = "traces"

urlpatterns = [
    path("v1/traces", views.otlp_traces, name="otlp-traces"),
    path("traces/ingest/", views.ingest, name="ingest"),
    path(
        "traces/ingest/keys/<int:key_id>/revoke/",
        views.ingest_key_revoke,
        name="ingest-key-revoke",
    ),
]
