"""The registry console: home, agents, grants, memory, versions, tools and memory stores.

Views parse input, call a selector (reads) or a service (writes) and render. Permission is
decided by the selectors' ``for_user`` gate and by the services; buttons are hidden for
people who may not use them, and the services refuse anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import scope_of
from apps.accounts.selectors import department_list
from apps.accounts.views import current_user, no_role_page, role_required
from apps.common.errors import ApplicationError
from apps.common.htmx import htmx_partial
from apps.runtime.views import agent_runtime_context

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
from .snapshots import blast_radius_spec

AGENTS_PER_PAGE = 250
CATALOG_PER_PAGE = 250
VERSIONS_PER_PAGE = 100

T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------


def error_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def _can_change_catalog(user: Any, entry: Tool | MemoryStore) -> bool:
    return type(entry).objects.for_user(user, CHANGE).filter(pk=entry.pk).exists()


def _post_data(request: HttpRequest) -> Any:
    """What to bind a form to: the POST, or nothing (an unbound form) for a GET."""
    return request.POST if request.method == "POST" else None


def _save(form: forms.Form, call_service: Callable[[], T]) -> T | None:
    """Hand a valid form to its service and answer what the service saved.

    None when there is nothing to save (an unbound or invalid form) or the service refused;
    its reasons are then on the form, field by field.
    """
    if not form.is_valid():
        return None
    try:
        return call_service()
    except ApplicationError as exc:
        apply_service_error(form, exc)
        return None


def _form_page(
    request: HttpRequest, template: str, form: forms.Form, **context: Any
) -> HttpResponse:
    """A form page; 400 when it shows a refused POST, so no client takes it for a success."""
    status = 400 if form.is_bound and form.errors else 200
    return render(request, template, {**context, "form": form}, status=status)


def _list_page(
    request: HttpRequest,
    template: str,
    table: str,
    *,
    filter_form: forms.Form,
    filters: dict[str, str],
    items: str,
    queryset: QuerySet[Any],
    per_page: int,
    **context: Any,
) -> HttpResponse:
    """A filtered list, one page at a time: the whole page, or only its ``table`` for an htmx
    swap. ``items`` is the name the templates know the page's objects by."""
    page = Paginator(queryset, per_page).get_page(request.GET.get("page"))
    context.update(
        {
            "filter_form": filter_form,
            "filtered": any(filters.values()),
            "page": page,
            items: page.object_list,
            "can_register": can_create_catalog_entry(request.user),
        }
    )
    return htmx_partial(request, template, context, partial=table)


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
    # A department's agents: admins get that department's kill switch here.
    stop_department = filters.get("department") if scope_of(user).is_admin else ""
    return _list_page(
        request,
        "registry/agent_list.html",
        "registry/partials/agent_table.html",
        filter_form=filter_form,
        filters=filters,
        items="agents",
        queryset=selectors.agent_list(user=user, **filters),
        per_page=AGENTS_PER_PAGE,
        section="agents",
        stop_department=stop_department,
    )


@role_required
@require_http_methods(["GET", "POST"])
def agent_create(request: HttpRequest) -> HttpResponse:
    user = current_user(request)
    if not can_create_catalog_entry(user):
        return error_page(
            request, 403, "Only owners and admins register agents. Ask an admin for the owner role."
        )
    form = AgentForm(_post_data(request), user=user)
    if agent := _save(form, lambda: services.agent_create(actor=user, data=form.service_data())):
        messages.success(request, f"Registered {agent.name} as version 1.")
        return redirect(agent)
    return _form_page(request, "registry/agent_form.html", form, section="agents", agent=None)


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
        "can_change": selectors.can_change_agent(user, agent),
        "now": timezone.now(),
        **agent_runtime_context(user, agent),
    }
    return render(request, "registry/agent_detail.html", context)


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def agent_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    agent = selectors.agent_get(user=user, slug=slug)
    if not selectors.can_change_agent(user, agent):
        return error_page(request, 403, "Only the agent's owner or an admin can change it.")
    form = AgentForm(_post_data(request), user=user, agent=agent)
    saved = _save(
        form,
        lambda: services.agent_update(
            actor=user, agent=agent, data=form.service_data(), summary=form.summary()
        ),
    )
    if saved:
        messages.success(request, f"Saved {saved.name}.")
        return redirect(saved)
    if form.is_bound:
        agent = selectors.agent_get(user=user, slug=slug)  # a refused update touched our copy
    return _form_page(request, "registry/agent_form.html", form, section="agents", agent=agent)


# --- grants and memory bindings --------------------------------------------------------------


def _changeable_agent(request: HttpRequest, slug: str) -> tuple[Agent, HttpResponse | None]:
    agent = selectors.agent_get(user=request.user, slug=slug)
    if not selectors.can_change_agent(request.user, agent):
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
    if granted := _save(
        form, lambda: services.grant_set(actor=user, agent=agent, **form.service_data())
    ):
        messages.success(request, f"{agent.name} may now use {granted.tool.name} as granted.")
        return redirect(agent)
    return _form_page(
        request, "registry/grant_form.html", form, section="agents", agent=agent, grant=grant
    )


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
    if binding := _save(
        form, lambda: services.memory_binding_set(actor=user, agent=agent, **form.service_data())
    ):
        messages.success(request, f"{agent.name} is bound to {binding.store.name}.")
        return redirect(agent)
    return _form_page(request, "registry/binding_form.html", form, section="agents", agent=agent)


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
    return _list_page(
        request,
        "registry/tool_list.html",
        "registry/partials/tool_table.html",
        filter_form=filter_form,
        filters=filters,
        items="tools",
        queryset=selectors.tool_list(user=request.user, **filters),
        per_page=CATALOG_PER_PAGE,
        section="tools",
        critical=RiskClass.CRITICAL,
    )


@login_required  # outsiders: the selector answers 404
def tool_detail(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    tool = selectors.tool_get(user=user, slug=slug)
    context = {
        "section": "tools",
        "tool": tool,
        "data_classes": list(tool.data_classes.all()),
        "blast_radius": list(blast_radius_spec(tool.blast_radius).items()),
        "downstream": selectors.tool_downstream(user=user, tool=tool),
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
    if tool := _save(form, lambda: services.tool_create(actor=user, data=form.service_data())):
        messages.success(request, f"Registered the tool {tool.name}.")
        return redirect(tool)
    return _form_page(request, "registry/tool_form.html", form, section="tools", tool=None)


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def tool_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    tool = selectors.tool_get(user=user, slug=slug)
    if not _can_change_catalog(user, tool):
        return error_page(request, 403, "Only the tool's owner or an admin can change it.")
    form = ToolForm(_post_data(request), user=user, tool=tool)
    if saved := _save(
        form, lambda: services.tool_update(actor=user, tool=tool, data=form.service_data())
    ):
        messages.success(request, f"Saved the tool {saved.name}.")
        return redirect(saved)
    if form.is_bound:
        tool = selectors.tool_get(user=user, slug=slug)  # a refused update touched our copy
    return _form_page(request, "registry/tool_form.html", form, section="tools", tool=tool)


# --- memory stores ---------------------------------------------------------------------------


@role_required
def memory_list(request: HttpRequest) -> HttpResponse:
    filter_form = MemoryFilterForm(request.GET)
    filters = filter_form.filters()
    return _list_page(
        request,
        "registry/memory_list.html",
        "registry/partials/memory_table.html",
        filter_form=filter_form,
        filters=filters,
        items="stores",
        queryset=selectors.memory_store_list(user=request.user, **filters),
        per_page=CATALOG_PER_PAGE,
        section="memory",
    )


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
    if store := _save(
        form, lambda: services.memory_store_create(actor=user, data=form.service_data())
    ):
        messages.success(request, f"Registered the memory store {store.name}.")
        return redirect(store)
    return _form_page(request, "registry/memory_form.html", form, section="memory", store=None)


@login_required  # outsiders: the selector answers 404
@require_http_methods(["GET", "POST"])
def memory_edit(request: HttpRequest, slug: str) -> HttpResponse:
    user = current_user(request)
    store = selectors.memory_store_get(user=user, slug=slug)
    if not _can_change_catalog(user, store):
        return error_page(request, 403, "Only the store's owner or an admin can change it.")
    form = MemoryStoreForm(_post_data(request), user=user, store=store)
    if saved := _save(
        form,
        lambda: services.memory_store_update(actor=user, store=store, data=form.service_data()),
    ):
        messages.success(request, f"Saved the memory store {saved.name}.")
        return redirect(saved)
    if form.is_bound:
        store = selectors.memory_store_get(user=user, slug=slug)  # a refused update touched it
    return _form_page(request, "registry/memory_form.html", form, section="memory", store=store)
