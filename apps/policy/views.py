"""The policy console: list, detail with history and diffs, the editor, the effective set and
the "try it" panel. Admins write; admins and auditors read; anyone else gets 403 or 404."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.common.htmx import is_htmx

from . import selectors, services
from .compiler import PolicyTextInvalid
from .constants import RESOURCE_TYPE_OF_ACTION, Action, Origin
from .evaluation import Simulation, effective_statements, policy_simulate
from .forms import PolicyForm, TryForm, VersionCompareForm, apply_service_error
from .models import Policy
from .schema import SCHEMA_TEXT

VERSIONS_PER_PAGE = 50
READ_REFUSED = (
    "Policies are open to admins and auditors. Ask an admin if you need to read or change them."
)
WRITE_REFUSED = "Only admins write policies."


def error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def _post_data(request: HttpRequest) -> Any:
    return request.POST if request.method == "POST" else None


def _diff_kind(index: int, line: str) -> str:
    if index < 2 and line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "ctx"


# --- try it ----------------------------------------------------------------------------------


def _try_form(request: HttpRequest, data: Any = None, **initial: Any) -> TryForm:
    agents = list(selectors.simulation_agents(user=request.user).values_list("slug", "name"))
    return TryForm(data, agents=agents, initial=initial or None)


def _resource_choices(request: HttpRequest, form: TryForm) -> list[tuple[str, str]]:
    action = (form.data.get("action") if form.is_bound else None) or form["action"].value()
    resource_type = RESOURCE_TYPE_OF_ACTION.get(
        str(action), RESOURCE_TYPE_OF_ACTION[Action.TOOL_INVOKE]
    )
    return selectors.resource_suggestions(user=request.user, resource_type=resource_type)


def _try_context(request: HttpRequest, form: TryForm, **extra: Any) -> dict[str, Any]:
    return {"try_form": form, "resources": _resource_choices(request, form), **extra}


def _simulate(form: TryForm) -> tuple[Simulation | None, list[str]]:
    """Run a valid try form; a draft that does not compile comes back as messages."""
    try:
        simulation = policy_simulate(
            form.policy_request(),
            draft_text=form.cleaned_data.get("text") or "",
            draft_policy=form.draft_slug(),
        )
    except PolicyTextInvalid as exc:
        return None, [str(p) for p in exc.problems]
    return simulation, []


@role_required
@require_http_methods(["GET", "POST"])
def policy_try(request: HttpRequest) -> HttpResponse:
    """GET: the try-it page, pre-filled from ``?agent=&action=&resource=``.
    POST: simulate; htmx gets the result fragment, a plain browser the whole page."""
    if not selectors.can_read_policies(request.user):
        return error_page(request, 403, READ_REFUSED)
    if request.method == "GET":
        initial = {k: v for k, v in request.GET.items() if k in ("agent", "action", "resource")}
        form = _try_form(request, **initial)
        return render(request, "policy/try.html", _try_context(request, form, section="policies"))
    form = _try_form(request, request.POST)
    simulation: Simulation | None = None
    draft_errors: list[str] = []
    if form.is_valid():
        simulation, draft_errors = _simulate(form)
    if form.is_valid() and not simulation and not draft_errors:
        draft_errors = ["The request could not be simulated."]
    result_context = {"simulation": simulation, "draft_errors": draft_errors, "try_form": form}
    if is_htmx(request):
        return render(request, "policy/partials/try_result.html", result_context)
    status = 200 if simulation else 400
    context = _try_context(request, form, section="policies", **result_context)
    return render(request, "policy/try.html", context, status=status)


@role_required
def policy_try_resources(request: HttpRequest) -> HttpResponse:
    """The resource suggestions for the chosen action (htmx swaps them in)."""
    if not selectors.can_read_policies(request.user):
        return error_page(request, 403, READ_REFUSED)
    form = _try_form(request, request.GET)
    return render(request, "policy/partials/try_datalist.html", _try_context(request, form))


# --- list, detail, history -------------------------------------------------------------------


@role_required
def policy_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if not selectors.can_read_policies(user):
        return error_page(request, 403, READ_REFUSED)
    q = request.GET.get("q", "")[:200]
    policies = list(selectors.policy_list(user=user, q=q))
    effects: dict[str, dict[str, int]] = {}
    for statement in effective_statements():
        if statement.policy:
            counts = effects.setdefault(statement.policy, {"permit": 0, "forbid": 0})
            counts[statement.effect] += 1
    for policy in policies:
        policy.effects = effects.get(policy.slug)  # type: ignore[attr-defined]
    context = {
        "section": "policies",
        "policies": policies,
        "q": q,
        "summary": selectors.effective_summary(user=user),
        "can_write": selectors.can_write_policies(user),
    }
    return render(request, "policy/list.html", context)


@login_required  # outsiders and non-readers: the selector answers 404
def policy_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    policy = selectors.policy_get(user=user, slug=slug)
    page = Paginator(selectors.policy_versions(policy), VERSIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    versions = list(page.object_list)
    statements = [s for s in effective_statements() if s.policy == policy.slug]
    form = _try_form(request, policy=policy.slug)
    context = {
        "section": "policies",
        "policy": policy,
        "statements": statements,
        "page": page,
        "versions": versions,
        "default_a": versions[1].number if len(versions) > 1 else None,
        "default_b": versions[0].number if versions else None,
        "can_write": selectors.can_write_policies(user),
        **_try_context(request, form),
    }
    return render(request, "policy/detail.html", context)


@login_required  # outsiders and non-readers: the selector answers 404
def policy_diff(request: HttpRequest, slug: str) -> HttpResponse:
    policy = selectors.policy_get(user=request.user, slug=slug)
    form = VersionCompareForm(request.GET)
    if not form.is_valid():
        return error_page(request, 400, "Pick two version numbers to compare, e.g. ?a=1&b=2.")
    low, high = sorted((form.cleaned_data["a"], form.cleaned_data["b"]))
    diff = selectors.policy_diff(
        older=selectors.policy_version_get(policy=policy, number=low),
        newer=selectors.policy_version_get(policy=policy, number=high),
    )
    lines = [{"text": line, "kind": _diff_kind(i, line)} for i, line in enumerate(diff.lines)]
    context = {
        "section": "policies",
        "policy": policy,
        "diff": diff,
        "lines": lines,
        "added": sum(1 for line in lines if line["kind"] == "add"),
        "removed": sum(1 for line in lines if line["kind"] == "del"),
    }
    return render(request, "policy/diff.html", context)


@role_required
def policy_effective(request: HttpRequest) -> HttpResponse:
    """Every statement in force: the baseline, admin policies, and one agent's compiled
    registry statements."""
    user = current_user(request)
    if not selectors.can_read_policies(user):
        return error_page(request, 403, READ_REFUSED)
    agents = list(selectors.simulation_agents(user=user).values_list("slug", "name"))
    agent = request.GET.get("agent", "")
    if agent and agent not in {slug for slug, _name in agents}:
        agent = ""
    statements = effective_statements(agent)
    groups = [
        (origin, Origin(origin).label, [s for s in statements if s.origin == origin])
        for origin in (Origin.ADMIN, Origin.BASELINE, Origin.REGISTRY)
    ]
    context = {
        "section": "policies",
        "agents": agents,
        "agent": agent,
        "groups": groups,
        "schema_text": SCHEMA_TEXT,
        "summary": selectors.effective_summary(user=user),
    }
    return render(request, "policy/effective.html", context)


# --- writing ---------------------------------------------------------------------------------


def _excerpts(text: str, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines the problems point at, with a caret under the column: what a compiler shows."""
    lines = text.splitlines() or [""]
    excerpts = []
    for problem in problems[:10]:
        line = max(1, min(int(problem["line"]), len(lines)))
        source = lines[line - 1].expandtabs(4)
        excerpts.append(
            {
                "line": line,
                "source": source,
                "pad": " " * min(max(0, int(problem["column"]) - 1), len(source)),
                "column": problem["column"],
            }
        )
    return excerpts


def _editor(
    request: HttpRequest,
    form: PolicyForm,
    policy: Policy | None,
    problems: list[dict[str, Any]] | None = None,
) -> HttpResponse:
    status = 400 if form.is_bound and form.errors else 200
    try_form = _try_form(request, policy=policy.slug if policy else "")
    context = {
        "section": "policies",
        "form": form,
        "policy": policy,
        "excerpts": _excerpts(str(form.data.get("text", "")), problems or []),
    }
    context.update(_try_context(request, try_form))
    return render(request, "policy/form.html", context, status=status)


@role_required
@require_http_methods(["GET", "POST"])
def policy_create(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if not selectors.can_write_policies(user):
        return error_page(request, 403, WRITE_REFUSED)
    form = PolicyForm(_post_data(request))
    problems: list[dict[str, Any]] = []
    if form.is_bound and form.is_valid():
        try:
            policy = services.policy_create(
                actor=user,
                data={**form.service_data(), "comment": form.cleaned_data.get("comment", "")},
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
            problems = exc.details.get("problems", [])
        else:
            state = "it is in force" if policy.enabled else "it is disabled"
            messages.success(request, f"Saved {policy.name} as version 1; {state}.")
            return redirect(policy)
    return _editor(request, form, None, problems)


@login_required  # outsiders and non-readers: the selector answers 404
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    policy = selectors.policy_get(user=user, slug=slug)
    if not selectors.can_write_policies(user):
        return error_page(request, 403, WRITE_REFUSED)
    form = PolicyForm(_post_data(request), policy=policy)
    problems: list[dict[str, Any]] = []
    if form.is_bound and form.is_valid():
        try:
            saved = services.policy_update(
                actor=user,
                policy=policy,
                data=form.service_data(),
                comment=form.cleaned_data.get("comment", ""),
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
            problems = exc.details.get("problems", [])
        else:
            messages.success(request, f"Saved {saved.name}.")
            return redirect(saved)
    return _editor(request, form, policy, problems)


@login_required  # outsiders and non-readers: the selector answers 404
@require_POST
def policy_toggle(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    policy = selectors.policy_get(user=user, slug=slug)
    if not selectors.can_write_policies(user):
        return error_page(request, 403, WRITE_REFUSED)
    try:
        if policy.enabled:
            services.policy_disable(actor=user, policy=policy)
            messages.success(request, f"Disabled {policy.name}: it no longer takes part.")
        else:
            services.policy_enable(actor=user, policy=policy)
            messages.success(request, f"Enabled {policy.name}: it is in force again.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect(policy)
