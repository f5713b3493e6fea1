"""A tool's cost per call: the console, the API and manifests take it, refuse nonsense with a
4xx naming the field, export it byte-stable, and the per-process table follows every edit."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from apps.common.errors import ApplicationError
from apps.registry import services
from apps.registry.manifests import ManifestError, manifest_apply, manifest_export
from apps.registry.models import Tool
from apps.registry.tool_costs import tool_costs

from ..clients import api_client, console_client
from ..factories import make_tool
from .test_manifests import manifest, tool_doc
from .test_views import errors_of, tool_form_data

pytestmark = pytest.mark.django_db

# What every entry point must refuse, as a person might type it.
BAD_COSTS = ["-0.01", "abc", "1e12", "NaN", "Infinity"]


def tool_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Vendor lookup",
        "slug": "vendor-lookup",
        "description": "Reads a vendor's master data from a paid lookup service.",
        "actions": ["read"],
        "input_schema": {"type": "object"},
        "cost_per_call_usd": 0.002,
    }
    body.update(extra)
    return body


# --- the service ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (0, Decimal("0")),
        ("0.002", Decimal("0.002")),
        (0.1, Decimal("0.1")),
        (Decimal("0.0000015"), Decimal("0.000002")),  # rounded to the micro-dollar
        ("-0", Decimal("0")),
        (999999, Decimal("999999")),
    ],
)
def test_the_service_stores_a_cost_rounded_to_six_places(org, given, stored):
    tool = services.tool_create(actor=org.owner, data=tool_body(cost_per_call_usd=given))
    tool.refresh_from_db()
    assert tool.cost_per_call_usd == stored
    assert not tool.cost_per_call_usd.is_signed()


@pytest.mark.parametrize(
    "value", [-1, "abc", Decimal("1e12"), Decimal("NaN"), float("inf"), True, [0.002], None]
)
def test_the_service_refuses_a_bad_cost_naming_the_field(org, value):
    with pytest.raises(ApplicationError) as caught:
        services.tool_create(actor=org.owner, data=tool_body(cost_per_call_usd=value))
    assert caught.value.http_status == 400
    assert list(caught.value.details) == ["cost_per_call_usd"]
    assert caught.value.message.startswith("cost_per_call_usd: ")
    assert not Tool.objects.exists()


def test_the_database_refuses_a_negative_cost_written_around_the_service(org):
    tool = make_tool("vendor-lookup")
    with pytest.raises(IntegrityError), transaction.atomic():
        Tool.objects.filter(pk=tool.pk).update(cost_per_call_usd=Decimal("-0.5"))


def test_a_change_of_cost_is_audited(org):
    tool = services.tool_create(actor=org.owner, data=tool_body())
    services.tool_update(actor=org.owner, tool=tool, data={"cost_per_call_usd": "0.0035"})
    event = tool_events(tool)[-1]
    assert (event.before["cost_per_call_usd"], event.after["cost_per_call_usd"]) == (0.002, 0.0035)


def tool_events(tool: Tool) -> list[Any]:
    from apps.audit.models import AuditEvent

    return list(
        AuditEvent.objects.filter(target_type="tool", target_id=str(tool.pk)).order_by("pk")
    )


# --- the console ------------------------------------------------------------------------------


def test_the_form_takes_a_cost_and_the_tool_page_shows_it_per_call(org):
    client = console_client(org.owner)
    response = client.post(
        reverse("registry:tool-create"), tool_form_data(cost_per_call_usd="0.002")
    )
    assert response.status_code == 302
    tool = Tool.objects.get(slug="crm-lookup")
    assert tool.cost_per_call_usd == Decimal("0.002")
    assert "$0.002 per call" in client.get(tool.get_absolute_url()).content.decode()
    edit = client.get(reverse("registry:tool-edit", args=[tool.slug]))
    assert edit.context["form"]["cost_per_call_usd"].value() == "0.002"


def test_a_tool_left_without_a_cost_costs_nothing_and_says_so(org):
    client = console_client(org.owner)
    response = client.post(reverse("registry:tool-create"), tool_form_data(cost_per_call_usd=""))
    assert response.status_code == 302
    tool = Tool.objects.get(slug="crm-lookup")
    assert tool.cost_per_call_usd == 0
    assert "no cost per call" in client.get(tool.get_absolute_url()).content.decode()


@pytest.mark.parametrize("value", BAD_COSTS)
def test_the_form_turns_a_bad_cost_into_a_field_error(org, value):
    response = console_client(org.owner).post(
        reverse("registry:tool-create"), tool_form_data(cost_per_call_usd=value)
    )
    assert response.status_code == 400
    assert "cost_per_call_usd" in errors_of(response)
    assert not Tool.objects.exists()


# --- the API ----------------------------------------------------------------------------------


def test_the_api_takes_a_cost_as_a_number_or_a_string_and_answers_a_decimal_string(org):
    client = api_client(org.owner)
    created = client.post("/api/v1/tools/", tool_body(), format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["cost_per_call_usd"] == "0.002"

    url = "/api/v1/tools/vendor-lookup/"
    changed = client.patch(url, {"cost_per_call_usd": "0.0000015"}, format="json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["cost_per_call_usd"] == "0.000002"
    assert (
        client.patch(url, {"cost_per_call_usd": 3}, format="json").json()["cost_per_call_usd"]
        == "3"
    )


@pytest.mark.parametrize("value", [*BAD_COSTS, -1, 1e12, True, None, [1]])
def test_the_api_refuses_a_bad_cost_with_a_400_naming_the_field(org, value):
    response = api_client(org.owner).post(
        "/api/v1/tools/", tool_body(cost_per_call_usd=value), format="json"
    )
    assert response.status_code == 400, response.content
    assert "cost_per_call_usd" in response.json()["error"]["details"]
    assert not Tool.objects.exists()


def test_a_bare_nan_in_the_json_body_is_a_400_not_a_500(org):
    body = json.dumps(tool_body(cost_per_call_usd=0)).replace(
        '"cost_per_call_usd": 0', '"cost_per_call_usd": NaN'
    )
    response = api_client(org.owner).post("/api/v1/tools/", body, content_type="application/json")
    assert response.status_code == 400
    assert not Tool.objects.exists()


# --- manifests --------------------------------------------------------------------------------


def test_a_manifest_cost_is_read_as_written_so_one_tenth_stays_exactly_one_tenth(org):
    manifest_apply(actor=org.admin, text=manifest(tool_doc(cost_per_call_usd=0.1)))
    assert Tool.objects.get().cost_per_call_usd == Decimal("0.1")
    assert "cost_per_call_usd: 0.1\n" in manifest_export(user=org.admin)


def test_a_manifest_without_a_cost_gives_a_free_tool_and_exports_zero(org):
    manifest_apply(actor=org.admin, text=manifest(tool_doc()))
    assert Tool.objects.get().cost_per_call_usd == 0
    assert "cost_per_call_usd: 0\n" in manifest_export(user=org.admin)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("-0.01", "cannot be negative"),
        ("abc", "Expected a number, got text"),
        ("'0.002'", "Expected a number, got text"),
        ("1.0e+12", "at most 999,999"),
        (".nan", "finite"),
        (".inf", "finite"),
        ("true", "Expected a number"),
    ],
)
def test_a_manifest_refuses_a_bad_cost_under_its_key_and_writes_nothing(org, written, message):
    text = textwrap.dedent(
        f"""\
        apiVersion: tether/v1
        kind: Tool
        metadata: {{slug: vendor-lookup, name: Vendor lookup}}
        spec:
          description: A paid lookup.
          actions: [read]
          input_schema: {{type: object}}
          cost_per_call_usd: {written}
        """
    )
    with pytest.raises(ManifestError) as caught:
        manifest_apply(actor=org.admin, text=text)
    problems = caught.value.problems
    assert [p["path"] for p in problems] == ["spec.cost_per_call_usd"], problems
    assert message in problems[0]["message"]
    assert caught.value.http_status == 400
    assert not Tool.objects.exists()


def test_the_manifest_api_answers_a_bad_cost_with_a_400(org):
    response = api_client(org.admin).post(
        "/api/v1/manifests/apply",
        manifest(tool_doc(cost_per_call_usd=-1)),
        content_type="application/yaml",
    )
    assert response.status_code == 400
    problems = response.json()["error"]["details"]["problems"]
    assert [p["path"] for p in problems] == ["spec.cost_per_call_usd"]


def test_export_of_costs_is_byte_stable_through_apply_into_an_empty_registry(org):
    docs = [
        tool_doc("free-lookup"),
        tool_doc("paid-lookup", cost_per_call_usd=0.002),
        tool_doc("tiny-lookup", cost_per_call_usd=0.000001),
        tool_doc("whole-lookup", cost_per_call_usd=3),
        tool_doc("dear-lookup", cost_per_call_usd=123456.123456),
    ]
    manifest_apply(actor=org.admin, text=manifest(*docs))
    first = manifest_export(user=org.admin)
    for line in ("cost_per_call_usd: 0.002\n", "cost_per_call_usd: 3\n",
                 "cost_per_call_usd: 123456.123456\n"):  # fmt: skip
        assert line in first

    assert {c.action for c in manifest_apply(actor=org.admin, text=first).changes} == {"unchanged"}
    Tool.objects.all().delete()
    manifest_apply(actor=org.admin, text=first)
    assert manifest_export(user=org.admin) == first
    assert Tool.objects.get(slug="tiny-lookup").cost_per_call_usd == Decimal("0.000001")


def test_a_cost_with_more_places_than_kept_applies_once_then_plans_unchanged(org):
    text = manifest(tool_doc(cost_per_call_usd=0.0020004))
    assert [c.action for c in manifest_apply(actor=org.admin, text=text).changes] == ["create"]
    assert Tool.objects.get().cost_per_call_usd == Decimal("0.002")
    assert [c.action for c in manifest_apply(actor=org.admin, text=text).changes] == ["unchanged"]


def test_a_changed_cost_is_planned_as_an_update_of_that_key(org):
    manifest_apply(actor=org.admin, text=manifest(tool_doc(cost_per_call_usd=0.002)))
    result = manifest_apply(actor=org.admin, text=manifest(tool_doc(cost_per_call_usd=0.003)))
    assert [(c.action, c.fields) for c in result.changes] == [("update", ["cost_per_call_usd"])]
    assert Tool.objects.get().cost_per_call_usd == Decimal("0.003")


# --- the per-process table ---------------------------------------------------------------------


def test_tool_costs_lists_the_tools_that_declare_one_and_follows_every_edit(
    org, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        paid = services.tool_create(actor=org.owner, data=tool_body())
        services.tool_create(
            actor=org.owner, data=tool_body(slug="free-lookup", cost_per_call_usd=0)
        )
    assert tool_costs() == {"vendor-lookup": Decimal("0.002")}

    with django_capture_on_commit_callbacks(execute=True):
        services.tool_update(actor=org.owner, tool=paid, data={"cost_per_call_usd": "0.005"})
    assert tool_costs() == {"vendor-lookup": Decimal("0.005")}

    with django_capture_on_commit_callbacks(execute=True):
        services.tool_update(actor=org.owner, tool=paid, data={"cost_per_call_usd": 0})
    assert tool_costs() == {}


def test_tool_costs_is_built_once_until_the_registry_changes(
    org, django_assert_num_queries, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.tool_create(actor=org.owner, data=tool_body())
    tool_costs()
    with django_assert_num_queries(0):
        assert tool_costs() == {"vendor-lookup": Decimal("0.002")}
