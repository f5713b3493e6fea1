"""The drift console: the alert list, an alert's page (chart, statistic in words, change events
around the onset) and what people do with it. Reads in selectors, writes in services."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.views import current_user, role_required
from apps.audit.services import Actor
from apps.common.errors import ApplicationError
from apps.registry.models import CHANGE
from apps.registry.selectors import agent_get, can_change_agent

from . import selectors, services
from .describe import alert_headline
from .forms import AlertFilterForm, PinBaselineForm, ResolveForm, SnoozeForm
from .models import DriftAlert

ALERTS_PER_PAGE = 50


@role_required
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    form = AlertFilterForm(request.GET or None)
    if request.GET and not form.is_valid():
        return render(request, "drift/list.html", {"section": "drift", "form": form}, status=400)
    filters = form.cleaned_data if form.is_valid() else {}
    status = filters.get("status") or "live"
    alerts = selectors.drift_alerts(
        user=user, status=status, severity=filters.get("severity", ""),
        environment=filters.get("environment", ""), agent=filters.get("agent", ""),
    )  # fmt: skip
    page = Paginator(alerts, ALERTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "section": "drift",
        "form": form,
        "status": status,
        "page": page,
        "rows": [(alert, alert_headline(alert)) for alert in page.object_list],
        "counts": selectors.live_alert_counts(user=user),
    }
    return render(request, "drift/list.html", context)


@role_required
@require_GET
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    user = current_user(request)
    alert = selectors.drift_alert_get(user=user, alert_id=alert_id)
    context = {
        "section": "drift",
        "view": selectors.alert_view(alert),
        "can_act": selectors.can_act_on(user, alert),
        "snooze_form": SnoozeForm(),
        "resolve_form": ResolveForm(),
    }
    return render(request, "drift/detail.html", context)


def _act(
    request: HttpRequest, alert_id: int, act: Callable[[DriftAlert, Actor], str]
) -> HttpResponse:
    """Run one action on an alert the user may act on; its message, or the refusal."""
    user = current_user(request)
    alert = selectors.drift_alert_get(user=user, alert_id=alert_id)
    if not selectors.can_act_on(user, alert):
        return render(
            request, "error.html",
            {"status": 403, "message": "Only the agent's owner or an admin can act on its alerts."},
            status=403,
        )  # fmt: skip
    try:
        messages.success(request, act(alert, Actor.user(user)))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("drift:alert", alert_id=alert.pk)


@role_required
@require_POST
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    def act(alert: DriftAlert, actor: Actor) -> str:
        services.alert_acknowledge(alert=alert, actor=actor)
        return "Acknowledged: the alert stays open and keeps updating."

    return _act(request, alert_id, act)


@role_required
@require_POST
def alert_snooze(request: HttpRequest, alert_id: int) -> HttpResponse:
    form = SnoozeForm(request.POST)

    def act(alert: DriftAlert, actor: Actor) -> str:
        if not form.is_valid():
            raise ApplicationError("Choose how long to snooze it.")
        services.alert_snooze(alert=alert, actor=actor, hours=form.cleaned_data["hours"])
        return f"Snoozed until {alert.snoozed_until:%Y-%m-%d %H:%M} UTC: no notices until then."

    return _act(request, alert_id, act)


@role_required
@require_POST
def alert_resolve(request: HttpRequest, alert_id: int) -> HttpResponse:
    form = ResolveForm(request.POST)

    def act(alert: DriftAlert, actor: Actor) -> str:
        if not form.is_valid():
            raise ApplicationError("Say what was done in at most 300 characters.")
        services.alert_resolve(alert=alert, actor=actor, resolution=form.cleaned_data["resolution"])
        return "Resolved. If the drift shows again, a new alert is raised."

    return _act(request, alert_id, act)


@role_required
@require_POST
def alert_accept(request: HttpRequest, alert_id: int) -> HttpResponse:
    """Accept the change: pin the baseline to the drifted version's runs of the last day and
    resolve the alert."""

    def act(alert: DriftAlert, actor: Actor) -> str:
        baseline = services.alert_accept(alert=alert, actor=actor)
        return (
            f"Accepted: v{alert.version.number}'s last {baseline.runs:,} runs are the baseline "
            f"in {alert.environment} from the next cycle."
        )

    return _act(request, alert_id, act)


@role_required
@require_POST
def baseline_pin(request: HttpRequest, slug: str) -> HttpResponse:
    """Pin the agent's baseline in an environment to a window of one version's runs."""
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    back = redirect("releases:agent", slug=agent.slug)
    if not can_change_agent(user, agent):
        messages.error(request, "Only the agent's owner or an admin can pin its baselines.")
        return back
    form = PinBaselineForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the environment, a version and a window (from, to).")
        return back
    data = form.cleaned_data
    version = agent.versions.filter(number=data["version"]).first()
    try:
        if version is None:
            raise ApplicationError(f"{agent.slug} has no v{data['version']}.")
        baseline = services.baseline_pin(
            agent=agent, environment=data["environment"], version=version, start=data["start"],
            end=data["end"], actor=Actor.user(user), note=data["note"],
        )  # fmt: skip
        messages.success(
            request,
            f"Pinned: v{version.number}'s {baseline.runs:,} runs are the baseline in "
            f"{baseline.environment} from the next cycle.",
        )
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return back


@role_required
@require_POST
def baseline_unpin(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug, action=CHANGE)
    environment = request.POST.get("environment", "")[:16]
    count = services.baseline_unpin(agent=agent, environment=environment, actor=Actor.user(user))
    if count:
        messages.success(request, f"Back to automatic baselines in {environment}.")
    else:
        messages.error(request, f"No pinned baseline in {environment!r}.")
    return redirect("releases:agent", slug=agent.slug)
