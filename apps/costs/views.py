"""The finance console (spend by department, agent, model; budgets; chargeback export) and the
model prices page. The figures come from apps/costs/dashboard.py; views parse and render."""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from apps.accounts.permissions import scope_of
from apps.accounts.views import current_user, role_required
from apps.common.errors import ApplicationError
from apps.registry.selectors import agent_get

from . import alert_selectors, dashboard, selectors, services
from .exports import CHARGEBACK_COLUMNS, chargeback_json, chargeback_rows
from .forms import DEFAULT_PERIOD, ChargebackForm, CostFilterForm, ModelPriceForm


def _error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def _csv(filename: str, columns: list[str], rows: list[list[Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return response


def _chart_export(request: HttpRequest, charts: list[dashboard.Chart], stem: str) -> HttpResponse:
    key = request.GET.get("export", "")
    chart = next((c for c in charts if c.key == key), None)
    if chart is None:
        known = ", ".join(c.key for c in charts)
        return _error(request, 400, f"No chart {key[:40]!r} to export; these are: {known}.")
    return _csv(f"{stem}-{chart.key}.csv", chart.columns, chart.rows)


def _with_default_period(request: HttpRequest) -> dict[str, str]:
    return {"period": DEFAULT_PERIOD, **request.GET.dict()}


@role_required
@require_GET
def finance(request: HttpRequest) -> HttpResponse:
    """Spend per department over time, top agents, models, cost per task, budget burn."""
    user = current_user(request)
    departments = dashboard.cost_departments(user=user)
    form = CostFilterForm(_with_default_period(request), departments=departments)
    if not form.is_valid():
        context = {"section": "costs", "form": form, "overview": None}
        return render(request, "costs/finance.html", context, status=400)
    filters = form.filters()
    overview = dashboard.finance_overview(user=user, filters=filters)
    if "export" in request.GET:
        return _chart_export(request, overview.charts, f"costs-{filters.start}-{filters.end}")
    context = {
        "section": "costs",
        "form": form,
        "overview": overview,
        "query": request.GET.urlencode(),
        "budget_alerts": alert_selectors.budget_alerts_for(user=user),
        "chargeback_form": ChargebackForm(
            initial={
                "month": f"{filters.end:%Y-%m}",
                "department": form.data.get("department", ""),
            },
            departments=departments,
            auto_id="chargeback_%s",  # beside the filters' own fields on the page
        ),
    }
    return render(request, "costs/finance.html", context)


@role_required
@require_GET
def agent_costs(request: HttpRequest, slug: str) -> HttpResponse:
    """One agent's spend over the period, by model, and its runs with what each cost."""
    user = current_user(request)
    agent = agent_get(user=user, slug=slug)
    form = CostFilterForm(_with_default_period(request), departments=[], with_department=False)
    if not form.is_valid():
        context = {"section": "costs", "form": form, "agent": agent, "costs": None}
        return render(request, "costs/agent.html", context, status=400)
    filters = form.filters()
    costs = dashboard.agent_costs(user=user, agent=agent, filters=filters)
    if "export" in request.GET:
        return _chart_export(
            request, costs.charts, f"costs-{agent.slug}-{filters.start}-{filters.end}"
        )
    context = {
        "section": "costs",
        "form": form,
        "agent": agent,
        "costs": costs,
        "query": request.GET.urlencode(),
    }
    return render(request, "costs/agent.html", context)


@role_required
@require_GET
def chargeback(request: HttpRequest) -> HttpResponse:
    """One month's spend per department, line by line, as CSV or JSON."""
    user = current_user(request)
    form = ChargebackForm(request.GET, departments=dashboard.cost_departments(user=user))
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        )
        return _error(request, 400, f"The chargeback export needs a month: {problems}")
    department = form.departments.get(form.cleaned_data["department"] or "")
    month = form.cleaned_data["month"]
    report = dashboard.chargeback(user=user, month=month, department=department)
    stem = f"chargeback-{month:%Y-%m}" + (f"-{department.slug}" if department else "")
    if form.cleaned_data.get("format") == "json":
        response = JsonResponse(chargeback_json(report), json_dumps_params={"indent": 2})
        response["Content-Disposition"] = f'attachment; filename="{stem}.json"'
        return response
    return _csv(f"{stem}.csv", CHARGEBACK_COLUMNS, chargeback_rows(report))


@role_required
def prices(request: HttpRequest) -> HttpResponse:
    """GET: the overrides, newest first. POST (admins): add one."""
    user = current_user(request)
    is_admin = scope_of(user).is_admin
    form = ModelPriceForm(request.POST if request.method == "POST" and is_admin else None)
    status = 200
    if request.method == "POST":
        if not is_admin:
            messages.error(request, "Only admins set model prices.")
            return redirect("costs:prices")
        if form.is_valid():
            try:
                price = services.model_price_set(actor=user, **form.cleaned_data)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"{price} saved; calls from then on are priced with it.")
                return redirect("costs:prices")
        status = 400
    context = {
        "section": "costs",
        "prices": selectors.model_prices()[: selectors.PRICES_SHOWN],
        "is_admin": is_admin,
        "form": form,
    }
    return render(request, "costs/prices.html", context, status=status)
