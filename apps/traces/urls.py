from django.urls import path, re_path

from . import holds, report_views, run_views, views

app_name = "traces"

# OTLP trace ids are 32 lowercase hex characters; anything else under /traces/ is a page.
TRACE = r"(?P<trace_id>[0-9a-f]{32})"
STEP = r"(?P<step_id>[a-z]+(?:-[0-9]{1,19})?)"  # span-12, decision-3, audit-9, request

urlpatterns = [
    path("v1/traces", views.otlp_traces, name="otlp-traces"),
    path("traces/ingest/", views.ingest, name="ingest"),
    path(
        "traces/ingest/keys/<int:key_id>/revoke/",
        views.ingest_key_revoke,
        name="ingest-key-revoke",
    ),
    # Legal holds (admins): apps/traces/holds.py.
    path("traces/holds/", holds.legal_holds, name="legal-holds"),
    path("traces/holds/place/", holds.legal_hold_place, name="legal-hold-place"),
    path(
        "traces/holds/<int:hold_id>/release/",
        holds.legal_hold_release,
        name="legal-hold-release",
    ),
    # The console: runs, their timelines, traces without a run, the live fleet.
    path("runs/", run_views.run_list, name="run-list"),
    path("runs/live/", run_views.fleet, name="fleet"),
    path("runs/<uuid:run_id>/", run_views.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/updates/", run_views.run_updates, name="run-updates"),
    path("runs/<uuid:run_id>/steps/<slug:step_id>/", run_views.run_step, name="run-step"),
    path(
        "runs/<uuid:run_id>/incident-report/",
        report_views.incident_report_html,
        name="incident-report",
    ),
    path(
        "runs/<uuid:run_id>/incident-report.json",
        report_views.incident_report_data,
        name="incident-report-json",
    ),
    path("traces/", run_views.trace_list, name="trace-list"),
    re_path(rf"^traces/{TRACE}/$", run_views.trace_detail, name="trace-detail"),
    re_path(rf"^traces/{TRACE}/updates/$", run_views.trace_updates, name="trace-updates"),
    re_path(rf"^traces/{TRACE}/steps/{STEP}/$", run_views.trace_step, name="trace-step"),
]
