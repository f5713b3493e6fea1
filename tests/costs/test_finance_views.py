"""The finance console: spend per department, agent, model and task from the rollups, each
chart with a table and CSV that say the same numbers, the chargeback export matching them to
the cent, and scope: nobody sees a department they have no business in."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.costs.dashboard import cents, department_month_total
from apps.costs.models import CostDaily
from apps.costs.rollups import finished_runs_count
from apps.runtime import services as runtime
from apps.runtime.models import Budget

from ..clients import api_client, console_client
from .spend import spender

pytestmark = pytest.mark.django_db

URL = reverse("costs:finance")
NOW = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def spend(org):
    claims = spender(org, "claims-bot", org.claims, team=org.claims_ops)
    payer = spender(org, "payer-bot", org.payments)
    for days_ago in range(20):
        claims.call(NOW - timedelta(days=days_ago))  # $2.50 a day
        payer.call(NOW - timedelta(days=days_ago), model="gpt-4o-mini")  # $0.15 a day
    claims.call(NOW - timedelta(days=1), tokens=(40_000_000, 0))  # a $100 spike
    run = claims.run("Claim 1")
    claims.call(NOW, run=run, tokens=(100_000, 0))  # $0.25
    runtime.run_finish(run=run, state="finished", outcome="approved")
    failed = claims.run("Claim 2")
    runtime.run_finish(run=failed, state="failed")
    finished_runs_count(now=timezone.now() + timedelta(seconds=1))
    return claims, payer


def read_csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_finance_sees_every_department_with_totals_from_the_rollups(org, spend):
    page = console_client(org.finance).get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    for title in ("Cost per day by department", "Top 10 agents by cost", "Cost by model and provider",
                  "Cost per successful task by department", "Budget burn"):  # fmt: skip
        assert title in html
    assert "Claims" in html and "Payments" in html
    total = sum(r.cost_usd for r in CostDaily.objects.all())
    assert page.context["overview"].total == cents(total)


def test_every_chart_exports_its_table_as_csv_with_the_same_numbers(org, spend):
    client = console_client(org.finance)
    rows = read_csv(client.get(URL, {"period": "30d", "export": "over-time"}))
    by_department: dict[str, Decimal] = {}
    for row in rows:
        by_department[row["Department"]] = by_department.get(
            row["Department"], Decimal(0)
        ) + Decimal(row["Cost (USD)"])
    assert by_department["Claims"] == Decimal("2.50") * 20 + Decimal("100.25")
    assert by_department["Payments"] == Decimal("0.15") * 20
    spike = [r for r in rows if r["Anomaly"] == "yes"]
    assert [(r["Department"], r["Day"]) for r in spike] == [
        ("Claims", (NOW - timedelta(days=1)).date().isoformat())
    ]
    agents = read_csv(client.get(URL, {"export": "top-agents"}))
    assert [a["Agent"] for a in agents] == ["Claims Bot", "Payer Bot"]
    tasks = read_csv(client.get(URL, {"export": "per-task"}))
    assert tasks == [{
        "Department": "Claims", "Tasks": "2", "Successful": "1", "Cost (USD)": "0.25",
        "Per task (USD)": "0.13", "Per successful task (USD)": "0.25",
    }]  # fmt: skip


def test_switching_department_and_environment_narrows_every_figure(org, spend):
    page = console_client(org.finance).get(URL, {"department": "payments", "environment": "prod"})
    overview = page.context["overview"]
    assert overview.total == Decimal("3.00")
    assert [row[0] for row in overview.chart("top-agents").rows] == ["Payer Bot"]
    empty = console_client(org.finance).get(URL, {"environment": "dev"}).context["overview"]
    assert (
        empty.total == 0
        and "No spend in this period."
        in console_client(org.finance).get(URL, {"environment": "dev"}).content.decode()
    )


def test_the_chargeback_matches_the_dashboard_to_the_cent_in_csv_and_json(org, spend):
    client = console_client(org.finance)
    month = NOW.date().replace(day=1)
    rows = read_csv(client.get(reverse("costs:chargeback"), {"month": f"{month:%Y-%m}"}))
    totals = {
        r["department"]: Decimal(r["cost_usd"]) for r in rows if r["kind"] == "department_total"
    }
    for department in (org.claims, org.payments):
        exact = department_month_total(department_id=department.pk, month=month)
        assert totals[department.name] == cents(exact)
        lines = [
            Decimal(r["cost_usd"])
            for r in rows
            if r["kind"] == "line" and r["department"] == department.name
        ]
        assert sum(lines) == exact
    data = client.get(
        reverse("costs:chargeback"), {"month": f"{month:%Y-%m}", "format": "json"}
    ).json()
    assert {d["department"]: d["total_usd"] for d in data["departments"]} == {
        name: str(total) for name, total in totals.items()
    }
    assert data["currency"] == "USD" and data["month"] == f"{month:%Y-%m}"
    only = read_csv(
        client.get(reverse("costs:chargeback"), {"month": f"{month:%Y-%m}", "department": "claims"})
    )
    assert {r["department"] for r in only} == {"Claims"}


def test_budget_burn_shows_spent_limit_and_a_forecast_to_the_month_end(org, spend):
    Budget.objects.create(
        name="Claims AI spend", kind="spend", scope="department_month", department=org.claims,
        limit=Decimal("500"),
    )  # fmt: skip
    Budget.objects.create(
        name="Ops AI spend", kind="spend", scope="team_month", team=org.claims_ops,
        limit=Decimal("100"),
    )  # fmt: skip
    rows = read_csv(console_client(org.finance).get(URL, {"export": "budget-burn"}))
    assert [(r["Budget"], r["Over"]) for r in rows] == [
        ("Claims AI spend", "Claims"), ("Ops AI spend", "Claims / Claims Ops"),
    ]  # fmt: skip
    month = NOW.date().replace(day=1)
    spent = cents(department_month_total(department_id=org.claims.pk, month=month))
    assert Decimal(rows[0]["Spent (USD)"]) == spent
    assert Decimal(rows[1]["Spent (USD)"]) == spent  # all of Claims' spend is the team's bot
    assert Decimal(rows[0]["Forecast (USD)"]) >= spent


def test_an_owner_sees_their_department_only_and_an_outsider_nothing(org, spend):
    owner = console_client(org.owner)  # owner in claims
    overview = owner.get(URL).context["overview"]
    assert [d.name for d in overview.departments] == ["Claims"]
    assert owner.get(URL, {"department": "payments"}).status_code == 400  # not a choice for them
    assert owner.get(reverse("costs:agent", args=["payer-bot"])).status_code == 404
    assert console_client(org.outsider).get(URL).status_code == 403


def test_the_agent_drill_down_lists_runs_with_their_cost(org, spend):
    page = console_client(org.finance).get(reverse("costs:agent", args=["claims-bot"]))
    assert page.status_code == 200
    costs = page.context["costs"]
    assert [r["state"] for r in costs.runs] == ["failed", "finished"]
    assert costs.runs[1]["cost_usd"] == Decimal("0.25")
    assert costs.total == Decimal("2.50") * 20 + Decimal("100.25")


@pytest.mark.parametrize(
    "query, message",
    [
        ({"period": "custom", "start": "2026-11-30", "end": "2026-11-01"}, "swap the days"),
        ({"period": "custom", "start": "2025-01-01", "end": "2026-11-01"}, "at most 400 days"),
        ({"period": "custom"}, "needs both"),
        ({"period": "forever"}, "Select a valid choice"),
        ({"start": "not-a-day", "period": "custom", "end": "2026-11-01"}, "valid date"),
        ({"department": "x" * 5000}, "Select a valid choice"),
    ],
)
def test_bad_filters_are_a_400_with_a_message(org, query, message):
    response = console_client(org.finance).get(URL, query)
    assert response.status_code == 400 and message in response.content.decode()


def test_a_bad_export_or_chargeback_request_is_a_400_with_a_message(org):
    client = console_client(org.finance)
    bad_chart = client.get(URL, {"export": "pie-of-everything"})
    assert bad_chart.status_code == 400 and "over-time" in bad_chart.content.decode()
    for query in (
        {},
        {"month": "2026-13"},
        {"month": "November"},
        {"month": "2026-11", "format": "xml"},
    ):
        answer = client.get(reverse("costs:chargeback"), query)
        assert answer.status_code == 400, query
    empty = client.get(reverse("costs:chargeback"), {"month": "2020-01", "format": "json"})
    assert json.loads(empty.content)["departments"] == []


def test_the_chargeback_api_answers_the_consoles_json_and_refuses_a_bad_month(org, spend):
    month = f"{NOW:%Y-%m}"
    console = console_client(org.finance).get(
        reverse("costs:chargeback"), {"month": month, "format": "json"}
    )
    api = api_client(org.finance).get("/api/v1/costs/chargeback/", {"month": month})
    assert api.status_code == 200 and api.json() == console.json()
    bad = api_client(org.finance).get("/api/v1/costs/chargeback/", {"month": "2026-13"})
    assert bad.status_code == 400 and "YYYY-MM" in bad.json()["error"]["message"]
    hidden = api_client(org.owner).get(
        "/api/v1/costs/chargeback/", {"month": month, "department": "payments"}
    )
    assert hidden.status_code == 400  # not a department they may read
    assert APIClient().get("/api/v1/costs/chargeback/", {"month": month}).status_code in (401, 403)


def test_spend_is_shown_by_the_person_runs_acted_for(org):
    bot = spender(org, "claims-bot", org.claims)
    runtime.delegation_grant(
        person=org.owner, agent=bot.agent, expires_at=timezone.now() + timedelta(days=1)
    )
    run = runtime.run_start(
        credential=bot.credential, task="For Bob", on_behalf_of=org.owner.username
    )[0]
    bot.call(NOW, run=run)  # $2.50 on Bob's behalf
    bot.call(NOW)  # on nobody's
    rows = read_csv(console_client(org.finance).get(URL, {"export": "by-person"}))
    name = org.owner.get_full_name() or org.owner.username
    assert rows == [{"On behalf of": name, "Cost (USD)": "2.50", "Calls": "1"}]
