"""The trace fabric's console: the runs list, a run's timeline (waterfall, details, replay),
traces without a run, and the live fleet.

Views parse input, call a selector and render; the selectors build the timeline. A run or a
trace outside the user's scope is a 404 (``login_required`` only: the selector decides).
Live updates come over the websocket (apps/traces/consumers.py); the ``updates`` views answer
the same messages to a page whose socket is closed and that polls instead.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.decorators.http import require_GET

from apps.accounts.selectors import department_list
from apps.accounts.views import current_user, role_required
from apps.common.htmx import htmx_partial
from apps.registry.models import Agent
from apps.runtime.constants import RunState

from . import feeds, live, selectors
from .constants import LIST_COUNT_CAP, LIVE_POLL_SECONDS, RUNS_PER_PAGE, TRACES_PER_PAGE
from .forms import RunFilterForm


class CappedPaginator(Paginator):
    """A paginator that counts at most ``LIST_COUNT_CAP`` matches.

    ``COUNT(*)`` over a filtered list visits every match, which grows with the table; counting
    through ``LIMIT cap + 1`` stops early (with the runs' started_at index, an index scan).
    Past the cap the list says "10,000+" and asks for narrower filters for older rows.
    """

    capped = False

    def __init__(self, object_list: Any, per_page: int, *, counted: Any = None) -> None:
        super().__init__(object_list, per_page)
        self.counted = object_list if counted is None else counted

    @cached_property
    def count(self) -> int:
        counted = self.counted[: LIST_COUNT_CAP + 1].count()
        self.capped = counted > LIST_COUNT_CAP
        return min(counted, LIST_COUNT_CAP)


def _filter_form(request: HttpRequest, *, for_traces: bool = False) -> RunFilterForm:
    user = current_user(request)
    agents = list(Agent.objects.for_user(user).order_by("slug").values_list("slug", flat=True))
    departments = [(d.slug, d.name) for d in department_list(user=user)]
    return RunFilterForm(
        request.GET or None, agents=agents, departments=departments, for_traces=for_traces
    )


def _bad_cursor() -> JsonResponse:
    return JsonResponse(
        {"error": {"code": "bad_cursor", "message": "Reload the page.", "details": {}}}, status=400
    )


# --- lists -----------------------------------------------------------------------------------


@role_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = _filter_form(request)
    filters = form.filters()
    runs = selectors.run_list(user=user, **filters)
    counted = selectors.run_list(user=user, counting=True, **filters)
    page = CappedPaginator(runs, RUNS_PER_PAGE, counted=counted).get_page(request.GET.get("page"))
    context = {
        "section": "runs",
        "tab": "runs",
        "filter_form": form,
        "filtered": bool(filters),
        "page": page,
        "runs": selectors.with_totals(page.object_list),
    }
    return htmx_partial(request, "traces/run_list.html", context, "traces/partials/run_table.html")


@role_required
@require_GET
def trace_list(request: HttpRequest) -> HttpResponse:
    """Traces that belong to no Tether run: agents that only export OpenTelemetry."""
    user = current_user(request)
    form = _filter_form(request, for_traces=True)
    filters = form.filters()
    page = CappedPaginator(selectors.trace_list(user=user, **filters), TRACES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "section": "runs",
        "tab": "traces",
        "filter_form": form,
        "filtered": bool(filters),
        "page": page,
        "traces": page.object_list,
    }
    return htmx_partial(
        request, "traces/run_list.html", context, "traces/partials/trace_table.html"
    )


# --- one run ---------------------------------------------------------------------------------


@login_required  # outsiders: the selector answers 404
@require_GET
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    user = current_user(request)
    run = selectors.run_get(user=user, run_id=run_id)
    tl = selectors.run_timeline(user=user, run=run)
    context = {
        "section": "runs",
        "run": run,
        "timeline": tl,
        "totals": tl.totals,
        "children": selectors.run_children(run=run),
        "cursor": feeds.page_cursor(
            tl, spans_max_id=feeds.run_spans_max_id(run) if tl.truncated else None
        ),
        "step_base": reverse("traces:run-detail", args=[run.pk]) + "steps/",
        "socket_path": live.run_socket_path(run.pk),
        "updates_url": reverse("traces:run-updates", args=[run.pk]),
        "poll_seconds": LIVE_POLL_SECONDS,
    }
    return render(request, "traces/run_detail.html", context)


def _step_response(request: HttpRequest, context: dict[str, Any]) -> HttpResponse:
    return htmx_partial(
        request, "traces/step_page.html", context, "traces/partials/step_detail.html"
    )


@login_required
@require_GET
def run_step(request: HttpRequest, run_id: uuid.UUID, step_id: str) -> HttpResponse:
    """One step's details: the panel's fragment for htmx, a page of its own otherwise."""
    user = current_user(request)
    run = selectors.run_get(user=user, run_id=run_id)
    step = selectors.run_step(user=user, run=run, step_id=step_id)
    back = reverse("traces:run-detail", args=[run.pk])
    context = {"section": "runs", "run": run, "step": step, "back": back,
               "step_base": back + "steps/"}  # fmt: skip
    return _step_response(request, context)


@login_required
@require_GET
def run_updates(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The polling fallback: what is new since the page's cursor, as the socket would send."""
    run = selectors.run_get(user=current_user(request), run_id=run_id)
    try:
        cursor = feeds.Cursor.decode(request.GET.get("cursor", ""))
    except ValueError:
        return _bad_cursor()
    message = feeds.RunFeed(run=run, cursor=cursor).poll()
    return JsonResponse(message or {"type": "update", "steps": [], "cursor": cursor.encode()})


# --- one trace without a run -----------------------------------------------------------------


@login_required
@require_GET
def trace_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    user = current_user(request)
    trace = selectors.trace_get(user=user, trace_id=trace_id)
    if trace.run_id is not None and selectors.run_visible(user=user, run_id=trace.run_id):
        return redirect("traces:run-detail", run_id=trace.run_id)
    tl = selectors.trace_timeline(user=user, trace=trace)
    detail = reverse("traces:trace-detail", args=[trace.trace_id])
    context = {
        "section": "runs",
        "trace": trace,
        "timeline": tl,
        "cursor": feeds.page_cursor(
            tl,
            spans_max_id=feeds.trace_spans_max_id(trace.trace_id) if tl.truncated else None,
        ),
        "step_base": detail + "steps/",
        "socket_path": live.trace_socket_path(trace.trace_id),
        "updates_url": reverse("traces:trace-updates", args=[trace.trace_id]),
        "poll_seconds": LIVE_POLL_SECONDS,
    }
    return render(request, "traces/trace_detail.html", context)


@login_required
@require_GET
def trace_step(request: HttpRequest, trace_id: str, step_id: str) -> HttpResponse:
    user = current_user(request)
    trace = selectors.trace_get(user=user, trace_id=trace_id)
    step = selectors.trace_step(user=user, trace=trace, step_id=step_id)
    back = reverse("traces:trace-detail", args=[trace.trace_id])
    context = {"section": "runs", "trace": trace, "step": step, "back": back,
               "step_base": back + "steps/"}  # fmt: skip
    return _step_response(request, context)


@login_required
@require_GET
def trace_updates(request: HttpRequest, trace_id: str) -> HttpResponse:
    trace = selectors.trace_get(user=current_user(request), trace_id=trace_id)
    try:
        cursor = feeds.Cursor.decode(request.GET.get("cursor", ""))
    except ValueError:
        return _bad_cursor()
    message = feeds.TraceFeed(trace=trace, cursor=cursor).poll()
    return JsonResponse(message or {"type": "update", "steps": [], "cursor": cursor.encode()})


# --- the live fleet --------------------------------------------------------------------------


@role_required
@require_GET
def fleet(request: HttpRequest) -> HttpResponse:
    """Active runs across the organisation (what the user may see), live over the socket;
    its rows alone for the htmx polling fallback."""
    runs = selectors.fleet_runs(user=current_user(request))
    context = {
        "section": "fleet",
        "runs": runs,
        "running": sum(1 for run in runs if run.state == RunState.RUNNING),
        "socket_path": live.FLEET_SOCKET_PATH,
        "poll_seconds": LIVE_POLL_SECONDS,
    }
    return htmx_partial(request, "traces/fleet.html", context, "traces/partials/fleet_rows.html")
