"""What approvers see of a tool (preview format, blast radius, systems, downstream tools) through
every path that writes or shows a tool: manifests, the service, the console and the API."""

from __future__ import annotations

import io
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError
from apps.registry import services
from apps.registry.demo import demo_directory
from apps.registry.manifests import ManifestError, manifest_apply, manifest_export
from apps.registry.models import Tool
from apps.registry.snapshots import tool_spec

from ..clients import api_client, console_client
from ..factories import make_tool
from .test_manifests import manifest, problems_of, tool_doc
from .test_views import errors_of, tool_form_data

pytestmark = pytest.mark.django_db

REFUND_SCHEMA = {
    "type": "object",
    "properties": {
        "payment_id": {"type": "string"},
        "amount": {"type": "number"},
        "currency": {"type": "string"},
        "customer_email": {"type": "string"},
    },
    "required": ["payment_id", "amount"],
}
CONTRACT = {
    "preview_format": "json",
    "blast_radius": {
        "records": "/payment_id",
        "people": "/customer_email",
        "money": "/amount",
        "currency": "/currency",
    },
    "systems": ["Stripe", "Ledger"],
    "downstream_tools": ["ledger-post"],
}


def refund_doc(**spec: Any) -> dict[str, Any]:
    return tool_doc("payment-refund", input_schema=REFUND_SCHEMA, **{**CONTRACT, **spec})


def problems_by_path(excinfo: pytest.ExceptionInfo[ManifestError]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in problems_of(excinfo):
        found.setdefault(problem["path"], []).append(problem["message"])
    return found


# --- manifests -------------------------------------------------------------------------------


def test_a_manifest_declares_what_approvers_see_and_applying_it_again_changes_nothing(org):
    text = manifest(refund_doc(), tool_doc("ledger-post"))

    manifest_apply(actor=org.admin, text=text)

    refund = Tool.objects.get(slug="payment-refund")
    assert refund.preview_format == "json"
    assert refund.blast_radius == CONTRACT["blast_radius"]
    assert refund.systems == ["Stripe", "Ledger"]
    assert refund.downstream_tools == ["ledger-post"]
    assert Tool.objects.get(slug="ledger-post").downstream_tools == []
    events = AuditEvent.objects.count()
    again = manifest_apply(actor=org.admin, text=text)
    assert {c.action for c in again.changes} == {"unchanged"}
    assert AuditEvent.objects.count() == events


def test_each_bad_approval_key_is_reported_under_its_own_path_and_nothing_is_written(org):
    doc = refund_doc(
        preview_format="yaml",
        blast_radius={"money": "amount"},
        systems="Stripe",
        downstream_tools=["ledger-pots"],
    )

    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(doc))

    found = problems_by_path(excinfo)
    assert found["spec.preview_format"] == [
        "Unknown preview format 'yaml'; use json, text, table, unified, or '' when the agent "
        "supplies none."
    ]
    assert found["spec.blast_radius"] == ["money: a JSON pointer starts with /, e.g. /amount."]
    assert found["spec.systems"] == ["Expected a list of text, got text."]
    assert found["spec.downstream_tools"] == [
        "No tool 'ledger-pots': define it in this file or register it first."
    ]
    assert not Tool.objects.exists()


@pytest.mark.parametrize(
    ("spec", "path", "message"),
    [
        ({"preview_format": 3}, "spec.preview_format", "Unknown preview format a number"),
        ({"preview_format": None}, "spec.preview_format", "Unknown preview format null"),
        ({"blast_radius": {"amount": "/amount"}}, "spec.blast_radius", "Unknown keys amount"),
        ({"blast_radius": {"currency": "euro"}}, "spec.blast_radius", "a code such as EUR"),
        ({"blast_radius": {"records": 5}}, "spec.blast_radius", "records: a JSON pointer"),
        ({"blast_radius": ["/amount"]}, "spec.blast_radius", "Expected a mapping"),
        ({"systems": [f"System {n}" for n in range(11)]}, "spec.systems", "At most 10"),
        ({"systems": ["x" * 61]}, "spec.systems", "1-60 characters"),
        ({"downstream_tools": "ledger-post"}, "spec.downstream_tools", "Expected a list"),
        ({"downstream_tools": ["payment-refund"]}, "spec.downstream_tools", "set itself off"),
        (
            {"downstream_tools": ["ledger-post", "ledger-post"]},
            "spec.downstream_tools",
            "ledger-post appears more than once",
        ),
    ],
)
def test_a_bad_approval_key_is_refused_with_a_message_that_says_what_is_wrong(
    org, spec, path, message
):
    text = manifest(refund_doc(**spec), tool_doc("ledger-post"))

    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=text)

    found = problems_by_path(excinfo)
    assert path in found, found
    assert message in " ".join(found[path])
    assert not Tool.objects.exists()


def test_a_currency_may_be_a_fixed_code_instead_of_a_pointer(org):
    doc = refund_doc(blast_radius={"money": "/amount", "currency": "EUR"}, downstream_tools=[])
    manifest_apply(actor=org.admin, text=manifest(doc))
    assert Tool.objects.get().blast_radius == {"money": "/amount", "currency": "EUR"}


def test_a_downstream_tool_already_registered_counts(org):
    make_tool("ledger-post")
    manifest_apply(actor=org.admin, text=manifest(refund_doc()))
    assert Tool.objects.get(slug="payment-refund").downstream_tools == ["ledger-post"]


def test_a_tool_defined_later_in_the_file_is_written_first_so_each_tool_has_one_event(org):
    manifest_apply(actor=org.admin, text=manifest(refund_doc(), tool_doc("ledger-post")))

    actions = list(
        AuditEvent.objects.filter(target_type="tool")
        .order_by("id")
        .values_list("target_repr", "action")
    )
    assert actions == [
        ("ledger-post", "registry.tool.created"),
        ("payment-refund", "registry.tool.created"),
    ]


def test_tools_that_set_each_other_off_are_both_linked_in_one_apply(org):
    text = manifest(
        tool_doc("ledger-post", downstream_tools=["payment-refund"]),
        refund_doc(),
    )

    manifest_apply(actor=org.admin, text=text)

    assert Tool.objects.get(slug="ledger-post").downstream_tools == ["payment-refund"]
    assert Tool.objects.get(slug="payment-refund").downstream_tools == ["ledger-post"]
    assert {c.action for c in manifest_apply(actor=org.admin, text=text).changes} == {"unchanged"}


def test_a_changed_approval_key_is_planned_as_an_update_of_that_field_and_audited(org):
    manifest_apply(actor=org.admin, text=manifest(refund_doc(), tool_doc("ledger-post")))
    changed = refund_doc(blast_radius={"money": "/amount", "currency": "EUR"}, systems=["Adyen"])

    result = manifest_apply(actor=org.admin, text=manifest(changed, tool_doc("ledger-post")))

    [change] = [c for c in result.changes if c.slug == "payment-refund"]
    assert (change.action, change.fields) == ("update", ["blast_radius", "systems"])
    event = AuditEvent.objects.filter(target_repr="payment-refund").latest("id")
    assert event.action == "registry.tool.updated"
    assert event.before["systems"] == ["Stripe", "Ledger"]
    assert event.after["systems"] == ["Adyen"]
    assert event.after["blast_radius"] == {"money": "/amount", "currency": "EUR"}


def test_the_apply_command_prints_the_changed_approval_fields_in_its_plan(org, tmp_path):
    path = tmp_path / "tools.yaml"
    path.write_text(manifest(refund_doc(), tool_doc("ledger-post")))
    call_command("apply", "-f", str(path), "--as", "ada", stdout=io.StringIO())
    path.write_text(manifest(refund_doc(preview_format="unified"), tool_doc("ledger-post")))

    out = io.StringIO()
    call_command("apply", "-f", str(path), "--as", "ada", "--dry-run", stdout=out)

    assert "~ update Tool payment-refund (preview_format)" in out.getvalue()


def test_export_writes_the_approval_keys_and_round_trips_byte_for_byte(org):
    manifest_apply(
        actor=org.admin,
        text=manifest(tool_doc("ledger-post", downstream_tools=["payment-refund"]), refund_doc()),
    )

    first = manifest_export(user=org.admin)

    refund = next(d for d in yaml.safe_load_all(first) if d["metadata"]["slug"] == "payment-refund")
    assert {key: refund["spec"][key] for key in CONTRACT} == CONTRACT
    # the blast radius reads records, people, money, currency whatever order jsonb kept
    assert list(refund["spec"]["blast_radius"]) == ["records", "people", "money", "currency"]
    assert "  systems: [Stripe, Ledger]\n" in first
    Tool.objects.all().delete()
    manifest_apply(actor=org.admin, text=first)
    assert manifest_export(user=org.admin) == first


# --- the service -----------------------------------------------------------------------------


def tool_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Payment refund",
        "slug": "payment-refund",
        "description": "Refunds a card payment.",
        "actions": ["create"],
        "input_schema": REFUND_SCHEMA,
    }
    data.update(extra)
    return data


def test_the_service_refuses_a_downstream_tool_that_is_not_registered(org):
    with pytest.raises(ApplicationError) as exc:
        services.tool_create(actor=org.owner, data=tool_data(downstream_tools=["ghost"]))

    assert exc.value.details == {
        "downstream_tools": [
            "No tool 'ghost': list the slugs of registered tools (register a tool before "
            "naming it here)."
        ]
    }
    assert not Tool.objects.exists()


def test_the_service_audits_the_approval_contract_before_and_after(org):
    make_tool("ledger-post")
    tool = services.tool_create(actor=org.owner, data=tool_data())

    services.tool_update(actor=org.owner, tool=tool, data=CONTRACT)

    event = AuditEvent.objects.filter(target_repr="payment-refund").latest("id")
    assert event.action == "registry.tool.updated"
    assert {key: event.before[key] for key in CONTRACT} == {
        "preview_format": "",
        "blast_radius": {},
        "systems": [],
        "downstream_tools": [],
    }
    assert {key: event.after[key] for key in CONTRACT} == CONTRACT


# --- the console -----------------------------------------------------------------------------


def contract_form_data(**extra: Any) -> dict[str, Any]:
    contract = {
        "name": "Payment refund",
        "slug": "payment-refund",
        "preview_format": "json",
        "blast_radius_records": "/payment_id",
        "blast_radius_people": "",
        "blast_radius_money": "/amount",
        "blast_radius_currency": "EUR",
        "systems": "Stripe, Ledger",
        "downstream_tools": "ledger-post",
    }
    return tool_form_data(**{**contract, **extra})


def test_owner_registers_what_approvers_see_through_the_form_and_the_page_shows_it(org):
    make_tool("ledger-post", name="Ledger post", risk_class="high")
    client = console_client(org.owner)

    response = client.post(reverse("registry:tool-create"), contract_form_data())

    assert response.status_code == 302
    tool = Tool.objects.get(slug="payment-refund")
    assert tool.preview_format == "json"
    assert tool.blast_radius == {"records": "/payment_id", "money": "/amount", "currency": "EUR"}
    assert tool.systems == ["Stripe", "Ledger"]
    assert tool.downstream_tools == ["ledger-post"]
    body = client.get(tool.get_absolute_url()).content.decode()
    assert "What approvers see" in body
    assert "JSON (current and proposed)" in body
    assert "Money: <code>/amount</code>" in body and "Currency: <code>EUR</code>" in body
    assert "Records: <code>/payment_id</code>" in body and "People:" not in body
    assert '<span class="chip">Stripe</span>' in body
    assert f'href="{reverse("registry:tool-detail", args=["ledger-post"])}"' in body


def test_the_edit_form_starts_from_the_contract_and_clearing_it_removes_it(org):
    make_tool("ledger-post")
    tool = make_tool("payment-refund", owner=org.owner, **CONTRACT)
    client = console_client(org.owner)
    url = reverse("registry:tool-edit", args=[tool.slug])

    form = client.get(url).context["form"]
    assert form["preview_format"].value() == "json"
    assert form["blast_radius_people"].value() == "/customer_email"
    assert form["systems"].value() == "Stripe, Ledger"
    response = client.post(
        url,
        tool_form_data(
            name=tool.name, preview_format="", blast_radius_records="", blast_radius_people="",
            blast_radius_money="", blast_radius_currency="", systems="", downstream_tools="",
        ),
    )  # fmt: skip

    assert response.status_code == 302
    tool.refresh_from_db()
    assert (tool.preview_format, tool.blast_radius, tool.systems, tool.downstream_tools) == (
        "",
        {},
        [],
        [],
    )


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"preview_format": "yaml"}, "preview_format", "valid choice"),
        ({"blast_radius_money": "amount"}, "blast_radius_money", "starts with /"),
        ({"blast_radius_currency": "euro"}, "blast_radius_currency", "a code such as EUR"),
        ({"blast_radius_records": "/" + "x" * 300}, "blast_radius_records", "at most 200"),
        ({"systems": ", ".join(f"S{n}" for n in range(11))}, "systems", "At most 10"),
        ({"systems": "x" * 61}, "systems", "1-60 characters"),
        ({"downstream_tools": "ledger-post, ghost"}, "downstream_tools", "No tool 'ghost'"),
        ({"downstream_tools": "payment-refund"}, "downstream_tools", "cannot set itself off"),
    ],
)
def test_the_tool_form_puts_each_bad_approval_input_on_its_own_field(org, changes, field, message):
    make_tool("ledger-post")

    response = console_client(org.owner).post(
        reverse("registry:tool-create"), contract_form_data(**changes)
    )

    assert response.status_code == 400
    errors = errors_of(response)
    assert field in errors, errors
    assert message in " ".join(errors[field]), errors
    assert not Tool.objects.filter(slug="payment-refund").exists()


def test_a_pointer_error_on_one_input_does_not_carry_its_key_twice(org):
    response = console_client(org.owner).post(
        reverse("registry:tool-create"), contract_form_data(blast_radius_money="amount")
    )
    assert errors_of(response)["blast_radius_money"] == [
        "A JSON pointer starts with /, e.g. /amount."
    ]


def test_a_tool_without_a_contract_says_so_and_tells_its_owner_how_to_add_one(org):
    tool = make_tool("crm-lookup", owner=org.owner)

    owner_page = console_client(org.owner).get(tool.get_absolute_url()).content.decode()
    approver_page = console_client(org.approver).get(tool.get_absolute_url()).content.decode()

    assert "Nothing declared: an approver sees only the call's arguments." in owner_page
    assert "Add a preview format and blast radius" in owner_page
    assert "Nothing declared" in approver_page
    assert "Add a preview format and blast radius" not in approver_page


def test_a_non_owner_cannot_change_what_approvers_see(org):
    tool = make_tool("payment-refund", owner=org.other_owner, systems=["Stripe"])
    url = reverse("registry:tool-edit", args=[tool.slug])

    console = console_client(org.owner).post(url, contract_form_data(systems="Nowhere"))
    api = api_client(org.owner).patch(
        "/api/v1/tools/payment-refund/", {"systems": ["Nowhere"]}, format="json"
    )

    assert console.status_code == 403
    assert api.status_code == 403
    tool.refresh_from_db()
    assert tool.systems == ["Stripe"]
    assert not AuditEvent.objects.filter(target_repr="payment-refund").exists()


# --- the API ---------------------------------------------------------------------------------


def api_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {**tool_data(), **CONTRACT}
    body.update(extra)
    return body


def test_the_api_registers_the_contract_and_answers_it_as_the_manifest_says_it(org):
    make_tool("ledger-post")

    response = api_client(org.owner).post("/api/v1/tools/", api_body(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    spec = tool_spec(Tool.objects.get(slug="payment-refund"))
    assert {key: body[key] for key in CONTRACT} == {key: spec[key] for key in CONTRACT}
    assert body["blast_radius"] == CONTRACT["blast_radius"]
    assert list(body["blast_radius"]) == ["records", "people", "money", "currency"]


def test_the_api_patches_one_approval_key_and_clears_the_blast_radius_with_an_empty_object(org):
    make_tool("ledger-post")
    make_tool("payment-refund", owner=org.owner, **CONTRACT)
    client = api_client(org.owner)

    patched = client.patch(
        "/api/v1/tools/payment-refund/", {"preview_format": "unified"}, format="json"
    )
    cleared = client.patch("/api/v1/tools/payment-refund/", {"blast_radius": {}}, format="json")

    assert patched.status_code == 200
    assert patched.json()["preview_format"] == "unified"
    assert patched.json()["systems"] == ["Stripe", "Ledger"]
    assert cleared.json()["blast_radius"] == {}
    assert Tool.objects.get(slug="payment-refund").blast_radius == {}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"preview_format": "yaml"}, "preview_format", 'Unknown preview format "yaml"'),
        ({"blast_radius": {"amount": "/amount"}}, "blast_radius", "Unknown field"),
        ({"blast_radius": {"money": "amount"}}, "blast_radius", "starts with /"),
        ({"blast_radius": {"money": 5}}, "blast_radius", "Not a valid string"),
        ({"blast_radius": "/amount"}, "blast_radius", "dictionary"),
        ({"systems": "Stripe"}, "systems", "list"),
        ({"systems": [f"S{n}" for n in range(11)]}, "systems", "no more than 10"),
        ({"downstream_tools": ["ghost"]}, "downstream_tools", "No tool 'ghost'"),
        ({"downstream_tools": ["payment-refund"]}, "downstream_tools", "cannot set itself off"),
    ],
)
def test_the_api_refuses_a_bad_approval_key_with_a_400_naming_it(org, changes, field, message):
    make_tool("ledger-post")

    response = api_client(org.owner).post("/api/v1/tools/", api_body(**changes), format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["details"], error
    assert message in str(error["details"][field]) + error["message"], error
    assert not Tool.objects.filter(slug="payment-refund").exists()


# --- the demo organisation -------------------------------------------------------------------


def test_every_high_and_critical_demo_tool_says_what_approvers_see_with_real_pointers():
    docs = [d for d in yaml.safe_load_all((demo_directory() / "tools.yaml").read_text()) if d]
    risky = [d for d in docs if d["spec"]["risk_class"] in ("high", "critical")]
    slugs = {d["metadata"]["slug"] for d in docs}

    assert len(risky) >= 10
    for doc in risky:
        spec, slug = doc["spec"], doc["metadata"]["slug"]
        assert spec["preview_format"] and spec["systems"] and spec["blast_radius"], slug
        properties = spec["input_schema"]["properties"]
        for key, pointer in spec["blast_radius"].items():
            if key == "currency" and not pointer.startswith("/"):
                continue
            assert pointer.lstrip("/").split("/")[0] in properties, (slug, key, pointer)
        assert set(spec["downstream_tools"]) <= slugs - {slug}, slug
