"""The releases console: an agent's path with what serves where, promotion and rollback, and
two versions' metrics side by side."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.drift.forms import PinBaselineForm
from apps.drift.selectors import baselines_of, held_versions, version_comparison
from apps.registry.forms import apply_service_error
from apps.registry.models import Agent
from apps.registry.selectors import agent_get, can_change_agent

from . import evals, selectors, services
from .forms import CaseForm, CompareForm, EvaluateForm, PromoteForm, RollbackForm, SuiteForm


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
        "held": held_versions(agent),
        "pin_form": PinBaselineForm(
            initial={"version": versions[0].number if versions else 1}, auto_id="pin_%s"
        ),
        "can_release": can_change_agent(user, agent),
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
    except ApplicationError as exc:  # NotPermitted included
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
    except ApplicationError as exc:  # NotPermitted included
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
        right=versions[data["right"]], days=int(data["days"]),
    )  # fmt: skip
    return render(request, "releases/compare.html", context)


def _owner_only(request: HttpRequest, agent: Agent) -> HttpResponse | None:
    if not can_change_agent(current_user(request), agent):
        message = "Only the agent's owner or an admin can change its evaluation suites."
        return render(request, "error.html", {"status": 403, "message": message}, status=403)
    return None


@role_required
def suites(request: HttpRequest, slug: str) -> HttpResponse:
    """The agent's evaluation suites, and a new one."""
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    form = SuiteForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if (refused := _owner_only(request, agent)) is not None:
            return refused
        if form.is_valid():
            try:
                suite = evals.suite_create(actor=user, agent=agent, data=form.cleaned_data)
            except ApplicationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Suite {suite.name} added: add its cases below.")
                return redirect("releases:suite", slug=agent.slug, suite=suite.slug)
        status = 400
    context = {
        "section": "agents", "agent": agent, "form": form,
        "suites": selectors.eval_suites(agent),
        "can_release": can_change_agent(user, agent),
    }  # fmt: skip
    return render(request, "releases/suites.html", context, status=status)


@role_required
def suite_detail(request: HttpRequest, slug: str, suite: str) -> HttpResponse:
    """One suite: its cases, a new case, its runs; evaluate a version now; delete it."""
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    the_suite = selectors.eval_suite_get(agent, suite)
    form = CaseForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if (refused := _owner_only(request, agent)) is not None:
            return refused
        if form.is_valid():
            try:
                case = evals.case_add(actor=user, suite=the_suite, data=form.case_data())
            except ApplicationError as exc:
                apply_service_error(form, exc)
            else:
                messages.success(request, f"Case {case.name} added.")
                return redirect("releases:suite", slug=agent.slug, suite=the_suite.slug)
        status = 400
    context = {
        "section": "agents", "agent": agent, "suite": the_suite, "form": form,
        "cases": the_suite.cases.order_by("name"), "runs": selectors.eval_runs(the_suite),
        "versions": selectors.agent_versions(agent),
        "can_release": can_change_agent(user, agent),
    }  # fmt: skip
    return render(request, "releases/suite.html", context, status=status)


@role_required
@require_POST
def suite_evaluate(request: HttpRequest, slug: str, suite: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    the_suite = selectors.eval_suite_get(agent, suite)
    if (refused := _owner_only(request, agent)) is not None:
        return refused
    form = EvaluateForm(request.POST)
    version = (
        agent.versions.filter(number=form.cleaned_data["version"]).first()
        if form.is_valid()
        else None
    )
    if version is None:
        messages.error(request, "Choose one of the agent's versions.")
    else:
        run = evals.suite_evaluate(suite=the_suite, version=version, actor_name=user.get_username())
        messages.success(
            request,
            f"v{version.number}: {run.passed} of {run.total} cases passed ({run.get_verdict_display().lower()}).",
        )
    return redirect("releases:suite", slug=agent.slug, suite=the_suite.slug)


@role_required
@require_POST
def suite_delete(request: HttpRequest, slug: str, suite: str) -> HttpResponse:
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    the_suite = selectors.eval_suite_get(agent, suite)
    if (refused := _owner_only(request, agent)) is not None:
        return refused
    evals.suite_delete(actor=user, suite=the_suite)
    messages.success(
        request, f"Suite {the_suite.name} removed: promotions are no longer held to it."
    )
    return redirect("releases:suites", slug=agent.slug)
