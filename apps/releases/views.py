"""The releases console: an agent's path with what serves where, promotion and rollback, and
two versions' metrics side by side."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError, NotPermitted
from apps.drift.selectors import baselines_of, version_comparison
from apps.registry.models import CHANGE, Agent
from apps.registry.selectors import agent_get

from . import selectors, services
from .forms import CompareForm, PromoteForm, RollbackForm


@role_required
@require_GET
def agent_releases(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    stages = selectors.release_stages(agent)
    versions = selectors.agent_versions(agent)
    context = {
        "section": "agents",
        "agent": agent,
        "stages": stages,
        "versions": versions,
        "serving": selectors.serving_where(stages),
        "next_steps": selectors.promote_choices(agent, stages),
        "history": selectors.release_history(agent),
        "baselines": baselines_of(agent),
        "can_release": Agent.objects.for_user(user, CHANGE).filter(pk=agent.pk).exists(),
        "compare_form": CompareForm(
            initial={
                "left": versions[1].number if len(versions) > 1 else 1,
                "right": versions[0].number if versions else 1,
            }
        ),
    }
    return render(request, "releases/agent.html", context)


def _back(request: HttpRequest, agent: Agent, target: str = "") -> HttpResponse:
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}):
        return redirect(target)
    return redirect("releases:agent", slug=agent.slug)


@role_required
@require_POST
def promote(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    form = PromoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a version and an environment (a canary share is 1-100 %).")
        return _back(request, agent)
    data = form.cleaned_data
    version = agent.versions.filter(number=data["version"]).first()
    try:
        if version is None:
            raise ApplicationError(f"{agent.slug} has no v{data['version']}.")
        services.version_promote(
            actor=user, agent=agent, version=version, environment=data["environment"],
            traffic_percent=data["traffic_percent"], note=data["note"],
        )  # fmt: skip
        messages.success(request, f"v{version.number} now serves in {data['environment']}.")
    except (ApplicationError, NotPermitted) as exc:
        messages.error(request, exc.message)
    return _back(request, agent)


@role_required
@require_POST
def rollback(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    form = RollbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the environment to roll back.")
        return _back(request, agent)
    data = form.cleaned_data
    try:
        deployment = services.version_rollback(
            actor=user, agent=agent, environment=data["environment"], note=data["note"]
        )
        messages.success(
            request,
            f"{data['environment']} rolled back: new runs use v{deployment.version.number} from now.",
        )
    except (ApplicationError, NotPermitted) as exc:
        messages.error(request, exc.message)
    return _back(request, agent, data["next"])


@role_required
@require_GET
def compare(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    form = CompareForm(request.GET)
    context: dict[str, object] = {"section": "agents", "agent": agent, "form": form}
    if not form.is_valid():
        return render(request, "releases/compare.html", context, status=400 if request.GET else 200)
    data = form.cleaned_data
    versions = {
        v.number: v for v in agent.versions.filter(number__in=[data["left"], data["right"]])
    }
    missing = [n for n in (data["left"], data["right"]) if n not in versions]
    if missing:
        form.add_error(None, f"{agent.slug} has no v{missing[0]}.")
        return render(request, "releases/compare.html", context, status=400)
    context["comparison"] = version_comparison(
        agent=agent, environment=data["environment"], left=versions[data["left"]],
        right=versions[data["right"]], days=data["days"],
    )  # fmt: skip
    return render(request, "releases/compare.html", context)
