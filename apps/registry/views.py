"""The registry console: home, agents, grants, memory, versions, tools and memory stores.

Views parse input, call a selector (reads) or a service (writes) and render. Permission is
decided by the selectors' ``for_user`` gate and by the services; buttons are hidden for
people who may not use them, and the services refuse anyway.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Prefetch, prefetch_related_objects
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.selectors import department_list
from apps.accounts.views import current_user, no_role_page, role_required
from apps.common.errors import ApplicationError
from apps.common.htmx import is_htmx

from . import selectors, services
from .constants import MemoryClass, RiskClass
from .forms import (
    AgentFilterForm,
    AgentForm,
    GrantForm,
    MemoryBindingForm,
    MemoryFilterForm,
    MemoryStoreForm,
    ToolFilterForm,
    ToolForm,
    VersionCompareForm,
    apply_service_error,
)
from .models import CHANGE, Agent, MemoryStore, Tool, ToolGrant, can_create_catalog_entry

AGENTS_PER_PAGE = 250
CATALOG_PER_PAGE = 250
VERSIONS_PER_PAGE = 100


# --- helpers ---------------------------------------------------------------------------------


def error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def wants_fragment(request: HttpRequest) -> bool:
    """An htmx swap wants the fragment; a history restore after a cache miss wants the page."""
    return is_htmx(request) and request.headers.get("HX-History-Restore-Request") != "true"


def form_status(request: HttpRequest, form: Any) -> int:
    return 400 if request.method == "POST" and form.errors else 200


def _can_change_agent(user: Any, agent: Agent) -> bool:
    return Agent.objects.for_user(user, CHANGE).filter(pk=agent.pk).exists()


def _can_change_catalog(user: Any, entry: Tool | MemoryStore) -> bool:
    return type(entry).objects.for_user(user, CHANGE).filter(pk=entry.pk).exists()


def _post_data(request: HttpRequest) -> Any:
    return request.POST if request.method == "POST" else None


# --- home ------------------------------------------------------------------------------------


@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if not scope_of(user).has_any_role:
        return no_role_page(request, status=200)
    summary = selectors.home_summary(user=user)
    grants = ToolGrant.objects.select_related("tool").order_by("tool__name")
    prefetch_related_objects(summary.active_agents, Prefetch("grants", queryset=grants))
    context = {
        "section": "home",
        "summary": summary,
        "total_agents": sum(summary.agent_counts.values()),
        "can_register": can_create_catalog_entry(user),
    }
    return render(request, "registry/home.html", context)


# --- agents ----------------------------------------------------------------------------------


@role_required
def agent_list(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    departments = [(d.slug, d.name) for d in department_list(user=user)]
    filter_form = AgentFilterForm(
        request.GET, owners=selectors.agent_owner_choices(user=user), departments=departments
    )
    filters = filter_form.filters()
    agents = selectors.agent_list(user=user, **filters)
    page = Paginator(agents, AGENTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "section": "agents",
        "filter_form": filter_form,
        "filtered": any(filters.values()),
        "page": page,
        "agents": page.object_list,
        "can_register": can_create_catalog_entry(user),
    }
    template = (
        "registry/partials/agent_table.html"
        if wants_fragment(request)
        else "registry/agent_list.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@role_required
@require_http_methods(["GET", "POST"])
def agent_create(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if not can_create_catalog_entry(user):
        return error_page(
            request, 403, "Only owners and admins register agents. Ask an admin for the owner role."
        )
    form = AgentForm(_post_data(request), user=user)
    if request.method == "POST" and form.is_valid():
        try:
            agent = services.agent_create(actor=user, data=form.service_data())
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, f"Registered {agent.name} as version 1.")
            return redirect(agent)
    context = {"section": "agents", "form": form, "agent": None}
    return render(request, "registry/agent_form.html", context, status=form_status(request, form))


@login_required  # outsiders: the selector answers 404
def agent_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = selectors.agent_get(user=user, slug=slug)
    versions = selectors.agent_versions(agent)
    context = {
        "section": "agents",
        "agent": agent,
        "grants": list(selectors.agent_grants(agent)),
        "bindings": list(selectors.agent_memory(agent)),
        "latest_version": versions.first(),
        "version_count": versions.count(),
        "can_change": _can_change_agent(user, agent),
        "now": timezone.now(),
    }
    return render(request, "registry/agent_detail.html", context)


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def agent_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = selectors.agent_get(user=user, slug=slug)
    if not _can_change_agent(user, agent):
        return error_page(request, 403, "Only the agent's owner or an admin can change it.")
    form = AgentForm(_post_data(request), user=user, agent=agent)
    if request.method == "POST" and form.is_valid():
        summary = form.cleaned_data.get("change_summary", "")
        try:
            services.agent_update(
                actor=user, agent=agent, data=form.service_data(), summary=summary
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
            agent = selectors.agent_get(user=user, slug=slug)  # the service touched our copy
        else:
            messages.success(request, f"Saved {agent.name}.")
            return redirect(agent)
    context = {"section": "agents", "form": form, "agent": agent}
    return render(request, "registry/agent_form.html", context, status=form_status(request, form))


# --- grants and memory bindings --------------------------------------------------------------


def _changeable_agent(request: HttpRequest, slug: str) -> tuple[Agent, HttpResponse | None]:
    agent = selectors.agent_get(user=request.user, slug=slug)
    if not _can_change_agent(request.user, agent):
        return agent, error_page(request, 403, "Only the agent's owner or an admin can change it.")
    return agent, None


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def grant_form(request: HttpRequest, slug: str, tool_slug: str | None = None) -> HttpResponse:
    user = current_user(request)
    agent, refused = _changeable_agent(request, slug)
    if refused:
        return refused
    grant = selectors.agent_grant_get(agent=agent, tool_slug=tool_slug) if tool_slug else None
    if grant is not None:
        initial: dict[str, Any] = {
            "tool": grant.tool.slug,
            "actions": list(grant.actions),
            "environments": list(grant.environments),
            "constraints": dict(grant.constraints),
            "expires_at": grant.expires_at,
        }
    else:
        initial = {"environments": list(agent.environments), "tool": request.GET.get("tool", "")}
    form = GrantForm(
        _post_data(request), user=user, agent=agent, tool=grant.tool if grant else None,
        initial=initial,
    )  # fmt: skip
    if request.method == "POST" and form.is_valid():
        cleaned = form.cleaned_data
        try:
            services.grant_set(
                actor=user, agent=agent, tool=cleaned["tool"], actions=cleaned["actions"],
                environments=cleaned["environments"], constraints=cleaned["constraints"],
                expires_at=cleaned["expires_at"],
            )  # fmt: skip
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(
                request, f"{agent.name} may now use {cleaned['tool'].name} as granted."
            )
            return redirect(agent)
    context = {"section": "agents", "agent": agent, "form": form, "grant": grant}
    return render(request, "registry/grant_form.html", context, status=form_status(request, form))


@login_required  # outsiders: the selector answers 404
@require_POST
def grant_remove(request: HttpRequest, slug: str, tool_slug: str) -> HttpResponse:
    agent, refused = _changeable_agent(request, slug)
    if refused:
        return refused
    grant = selectors.agent_grant_get(agent=agent, tool_slug=tool_slug)
    try:
        services.grant_remove(actor=current_user(request), grant=grant)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Revoked {grant.tool.name} from {agent.name}.")
    return redirect(agent)


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def memory_binding_create(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent, refused = _changeable_agent(request, slug)
    if refused:
        return refused
    form = MemoryBindingForm(_post_data(request), user=user)
    if request.method == "POST" and form.is_valid():
        store = form.cleaned_data["store"]
        try:
            services.memory_binding_set(
                actor=user, agent=agent, store=store, access=form.cleaned_data["access"]
            )
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, f"{agent.name} is bound to {store.name}.")
            return redirect(agent)
    context = {"section": "agents", "agent": agent, "form": form}
    return render(request, "registry/binding_form.html", context, status=form_status(request, form))


@login_required  # outsiders: the selector answers 404
@require_POST
def memory_binding_remove(request: HttpRequest, slug: str, store_slug: str) -> HttpResponse:
    agent, refused = _changeable_agent(request, slug)
    if refused:
        return refused
    binding = selectors.agent_binding_get(agent=agent, store_slug=store_slug)
    try:
        services.memory_binding_remove(actor=current_user(request), binding=binding)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Unbound {binding.store.name} from {agent.name}.")
    return redirect(agent)


# --- versions --------------------------------------------------------------------------------


@login_required  # outsiders: the selector answers 404
def agent_versions(request: HttpRequest, slug: str) -> HttpResponse:
    agent = selectors.agent_get(user=request.user, slug=slug)
    page = Paginator(selectors.agent_versions(agent), VERSIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    versions = list(page.object_list)
    context = {
        "section": "agents",
        "agent": agent,
        "page": page,
        "versions": versions,
        "default_a": versions[1].number if len(versions) > 1 else None,
        "default_b": versions[0].number if versions else None,
    }
    return render(request, "registry/agent_versions.html", context)


def _json_text(value: Any, *, skip: str = "") -> str:
    """A snapshot value as a person reads it: text as is, an object one ``key: value`` line per
    key (the entry's own name, already in the row label, left out), anything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value:
        return "\n".join(
            f"{key}: {json.dumps(inner, ensure_ascii=False, default=str)}"
            for key, inner in value.items()
            if key != skip
        )
    return json.dumps(value, ensure_ascii=False, default=str)


def _entry_key(field: str) -> str:
    """``tools: crm-lookup`` rows carry the tool's name already; so do memory rows."""
    return {"tools": "tool", "memory": "store"}.get(field.split(":")[0], "")


def _change_kind(before: Any, after: Any) -> str:
    if before is None:
        return "added"
    return "removed" if after is None else "changed"


def _diff_line_kind(index: int, line: str) -> str:
    if index < 2 and line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "del"
    return "ctx"


@login_required  # outsiders: the selector answers 404
def agent_version_diff(request: HttpRequest, slug: str) -> HttpResponse:
    agent = selectors.agent_get(user=request.user, slug=slug)
    form = VersionCompareForm(request.GET)
    if not form.is_valid():
        return error_page(request, 400, "Pick two version numbers to compare, e.g. ?a=1&b=2.")
    low, high = sorted((form.cleaned_data["a"], form.cleaned_data["b"]))
    older = selectors.version_get(agent=agent, number=low)
    newer = selectors.version_get(agent=agent, number=high)
    diff = selectors.version_diff(older=older, newer=newer)
    changes = [
        {
            "field": change.field,
            "kind": _change_kind(change.before, change.after),
            "before": _json_text(change.before, skip=_entry_key(change.field)),
            "after": _json_text(change.after, skip=_entry_key(change.field)),
        }
        for change in diff.changes
    ]
    lines = [
        {"text": line, "kind": _diff_line_kind(i, line)}
        for i, line in enumerate(diff.instructions_diff)
    ]
    context = {
        "section": "agents",
        "agent": agent,
        "diff": diff,
        "changes": changes,
        "instruction_lines": lines,
        "added": sum(1 for line in lines if line["kind"] == "add"),
        "removed": sum(1 for line in lines if line["kind"] == "del"),
    }
    return render(request, "registry/agent_diff.html", context)


# --- tools -----------------------------------------------------------------------------------


@role_required
def tool_list(request: HttpRequest) -> HttpResponse:
    filter_form = ToolFilterForm(request.GET)
    filters = filter_form.filters()
    tools = selectors.tool_list(user=request.user, **filters)
    page = Paginator(tools, CATALOG_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "section": "tools",
        "filter_form": filter_form,
        "filtered": any(filters.values()),
        "page": page,
        "tools": page.object_list,
        "can_register": can_create_catalog_entry(request.user),
        "critical": RiskClass.CRITICAL,
    }
    template = (
        "registry/partials/tool_table.html"
        if wants_fragment(request)
        else "registry/tool_list.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required  # outsiders: the selector answers 404
def tool_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    tool = selectors.tool_get(user=user, slug=slug)
    context = {
        "section": "tools",
        "tool": tool,
        "data_classes": list(tool.data_classes.all()),
        "holders": list(
            selectors.tool_grants_visible(user=user, tool=tool).order_by("agent__name")
        ),
        "can_change": _can_change_catalog(user, tool),
        "now": timezone.now(),
    }
    return render(request, "registry/tool_detail.html", context)


@role_required
@require_http_methods(["GET", "POST"])
def tool_create(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if not can_create_catalog_entry(user):
        return error_page(request, 403, "Only owners and admins register tools.")
    form = ToolForm(_post_data(request), user=user)
    if request.method == "POST" and form.is_valid():
        try:
            tool = services.tool_create(actor=user, data=form.service_data())
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, f"Registered the tool {tool.name}.")
            return redirect(tool)
    context = {"section": "tools", "form": form, "tool": None}
    return render(request, "registry/tool_form.html", context, status=form_status(request, form))


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def tool_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    tool = selectors.tool_get(user=user, slug=slug)
    if not _can_change_catalog(user, tool):
        return error_page(request, 403, "Only the tool's owner or an admin can change it.")
    form = ToolForm(_post_data(request), user=user, tool=tool)
    if request.method == "POST" and form.is_valid():
        try:
            services.tool_update(actor=user, tool=tool, data=form.service_data())
        except ApplicationError as exc:
            apply_service_error(form, exc)
            tool = selectors.tool_get(user=user, slug=slug)
        else:
            messages.success(request, f"Saved the tool {tool.name}.")
            return redirect(tool)
    context = {"section": "tools", "form": form, "tool": tool}
    return render(request, "registry/tool_form.html", context, status=form_status(request, form))


# --- memory stores ---------------------------------------------------------------------------


@role_required
def memory_list(request: HttpRequest) -> HttpResponse:
    filter_form = MemoryFilterForm(request.GET)
    filters = filter_form.filters()
    stores = selectors.memory_store_list(user=request.user, **filters)
    page = Paginator(stores, CATALOG_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "section": "memory",
        "filter_form": filter_form,
        "filtered": any(filters.values()),
        "page": page,
        "stores": page.object_list,
        "can_register": can_create_catalog_entry(request.user),
    }
    template = (
        "registry/partials/memory_table.html"
        if wants_fragment(request)
        else "registry/memory_list.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required  # outsiders: the selector answers 404
def memory_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    store = selectors.memory_store_get(user=user, slug=slug)
    bindings = selectors.memory_store_bindings_visible(user=user, store=store).order_by(
        "agent__name"
    )
    context = {
        "section": "memory",
        "store": store,
        "data_classes": list(store.data_classes.all()),
        "bindings": list(bindings),
        "can_change": _can_change_catalog(user, store),
        "forbidden": store.store_class == MemoryClass.FORBIDDEN,
    }
    return render(request, "registry/memory_detail.html", context)


@role_required
@require_http_methods(["GET", "POST"])
def memory_create(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if not can_create_catalog_entry(user):
        return error_page(request, 403, "Only owners and admins register memory stores.")
    form = MemoryStoreForm(_post_data(request), user=user)
    if request.method == "POST" and form.is_valid():
        try:
            store = services.memory_store_create(actor=user, data=form.service_data())
        except ApplicationError as exc:
            apply_service_error(form, exc)
        else:
            messages.success(request, f"Registered the memory store {store.name}.")
            return redirect(store)
    context = {"section": "memory", "form": form, "store": None}
    return render(request, "registry/memory_form.html", context, status=form_status(request, form))


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def memory_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    store = selectors.memory_store_get(user=user, slug=slug)
    if not _can_change_catalog(user, store):
        return error_page(request, 403, "Only the store's owner or an admin can change it.")
    form = MemoryStoreForm(_post_data(request), user=user, store=store)
    if request.method == "POST" and form.is_valid():
        try:
            services.memory_store_update(actor=user, store=store, data=form.service_data())
        except ApplicationError as exc:
            apply_service_error(form, exc)
            store = selectors.memory_store_get(user=user, slug=slug)
        else:
            messages.success(request, f"Saved the memory store {store.name}.")
            return redirect(store)
    context = {"section": "memory", "form": form, "store": store}
    return render(request, "registry/memory_form.html", context, status=form_status(request, form))
