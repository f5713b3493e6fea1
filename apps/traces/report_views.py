"""The incident report of a run, as one self-contained HTML file or as JSON.

Anyone who may see the run may take its report; taking one is audited (it is an export of the
run's records). ``?download=1`` answers the HTML as an attachment.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.accounts.views import current_user

from . import selectors
from .incident import incident_report, report_json


def _filename(run_id: uuid.UUID, extension: str) -> str:
    return f"tether-incident-{run_id}.{extension}"


@login_required  # outsiders: the selector answers 404
@require_GET
def incident_report_html(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    user = current_user(request)
    run = selectors.run_get(user=user, run_id=run_id)
    report = incident_report(user=user, run=run)
    context = {"report": report, "run": run, "data": report_json(report)}
    response = render(request, "traces/incident_report.html", context)
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="{_filename(run_id, "html")}"'
    return response


@login_required
@require_GET
def incident_report_data(request: HttpRequest, run_id: uuid.UUID) -> JsonResponse:
    user = current_user(request)
    run = selectors.run_get(user=user, run_id=run_id)
    response = JsonResponse(report_json(incident_report(user=user, run=run)))
    response["Content-Disposition"] = f'attachment; filename="{_filename(run_id, "json")}"'
    return response
