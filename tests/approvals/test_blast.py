"""The blast radius: how far a gated step reaches, read from the tool's contract and the
arguments, and never an error whatever the arguments are."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.template.loader import render_to_string
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.approvals.blast import MISSING, PEOPLE_SHOWN_MAX, blast_radius, resolve_pointer
from apps.registry.models import DataClass, Tool

from ..factories import make_tool


def tool_with(**extra: Any) -> Tool:
    data_classes = extra.pop("data_classes", [])
    tool = make_tool(**extra)
    tool.data_classes.set(DataClass.objects.filter(slug__in=data_classes))
    return tool


def radius(
    tool: Tool,
    arguments: dict[str, Any],
    *,
    preview: dict[str, Any] | None = None,
    environment: str = "prod",
    granted: set[str] | None = None,
) -> dict[str, Any]:
    return blast_radius(
        tool=tool,
        arguments=arguments,
        environment=environment,
        preview=preview,
        granted_tools=granted or set(),
    )


# --- JSON pointers ----------------------------------------------------------------------------


def test_a_pointer_walks_objects_and_list_indexes_and_unescapes_tildes() -> None:
    document = {"a/b": {"m~n": [10, {"x": None}]}, "": 5, "list": [1, 2]}
    assert resolve_pointer(document, "/a~1b/m~0n/0") == 10
    assert resolve_pointer(document, "/a~1b/m~0n/1/x") is None
    assert resolve_pointer(document, "/") == 5
    assert resolve_pointer(document, "") is document
    assert resolve_pointer({"~1": "tilde-one"}, "/~01") == "tilde-one"


def test_a_pointer_to_nothing_resolves_to_missing_and_never_raises() -> None:
    document = {"list": [1, 2], "text": "abc", "n": 3}
    for pointer in (
        "/absent",
        "/list/2",
        "/list/-",
        "/list/01",
        "/list/-1",
        "/list/x",
        "/list/²",  # a digit to str.isdigit, not to int()
        "/text/0",
        "/n/0",
        "no-slash",
    ):
        assert resolve_pointer(document, pointer) is MISSING, pointer
    assert resolve_pointer(document, 7) is MISSING  # type: ignore[arg-type]


# --- records ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_records_are_counted_at_the_pointer_and_say_where_from() -> None:
    tool = tool_with(blast_radius={"records": "/ids"})
    cases = [
        ({"ids": ["a", "b", "c"]}, 3),
        ({"ids": 12}, 12),
        ({"ids": -4}, 4),
        ({"ids": 5.0}, 5),
        ({"ids": "A-1"}, 1),
        ({"ids": True}, 1),
        ({"ids": None}, 1),
        ({"ids": {"id": 1}}, 1),
    ]
    for arguments, expected in cases:
        result = radius(tool, arguments)
        assert (result["records"], result["records_source"]) == (expected, "arguments /ids")


@pytest.mark.django_db
def test_without_a_pointer_records_come_from_the_preview_or_are_assumed() -> None:
    tool = tool_with(blast_radius={"records": "/ids"})
    table = {
        "format": "table",
        "current": [{"id": 1, "v": 1}, {"id": 2, "v": 1}, {"id": 3, "v": 1}],
        "proposed": [{"id": 1, "v": 2}, {"id": 3, "v": 1}, {"id": 4, "v": 1}],
    }
    result = radius(tool, {"other": 1}, preview=table)
    assert (result["records"], result["records_source"]) == (
        3,
        "preview",
    )  # 1 changed, 1 added, 1 removed

    changed = {"format": "json", "current": {"a": 1}, "proposed": {"a": 2}}
    same = {"format": "json", "current": {"a": 1}, "proposed": {"a": 1}}
    text = {"format": "text", "current": "a", "proposed": "b"}
    broken = {"format": "table", "current": "nope", "proposed": []}
    assert radius(tool, {}, preview=changed)["records_source"] == "preview"
    for preview in (same, text, broken, None):
        result = radius(tool, {}, preview=preview)
        assert (result["records"], result["records_source"]) == (1, "assumed")


# --- people -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_people_are_read_at_the_pointer_and_every_address_in_the_arguments() -> None:
    tool = tool_with(blast_radius={"people": "/to"})
    result = radius(
        tool,
        {
            "to": ["Ann <not an address>", {"email": "bob@example.com", "name": "Bob"}, {"name": "Cy"}, 7, {}],
            "cc": {"list": [{"notes": "ask BOB@example.com or dee@mail.example.org."}]},
            "body": "reply to eve@example.co.uk; not an address: a@b, x@y.z",
            "ops@example.com": "as a key",
        },
    )  # fmt: skip
    assert result["people"] == [
        "Ann <not an address>",
        "bob@example.com",
        "Cy",
        "dee@mail.example.org",
        "eve@example.co.uk",
        "ops@example.com",
    ]
    assert result["people_count"] == 6


@pytest.mark.django_db
def test_a_single_person_at_the_pointer_counts_once_and_long_lists_are_cut_to_fifty() -> None:
    tool = tool_with(blast_radius={"people": "/customer"})
    single = radius(tool, {"customer": "c@example.com", "note": "for C@EXAMPLE.COM"})
    assert (single["people"], single["people_count"]) == (["c@example.com"], 1)
    as_object = radius(tool, {"customer": {"name": "  Dana  "}})
    assert as_object["people"] == ["Dana"]

    many = radius(tool, {"customer": [f"p{i}@example.com" for i in range(120)]})
    assert many["people_count"] == 120
    assert len(many["people"]) == PEOPLE_SHOWN_MAX
    assert many["people"][0] == "p0@example.com"


# --- money ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_money_is_read_as_a_size_with_its_currency() -> None:
    pointer_currency = tool_with(blast_radius={"money": "/amount", "currency": "/cur"})
    literal_currency = tool_with(blast_radius={"money": "/amount", "currency": "EUR"})
    no_currency = tool_with(blast_radius={"money": "/amount"})
    cases = [
        (pointer_currency, {"amount": 1250, "cur": "gbp"}, "1250", "GBP", "1,250.00 GBP"),
        (pointer_currency, {"amount": 12.5, "cur": "not money"}, "12.5", "USD", "12.50 USD"),
        (literal_currency, {"amount": "-1234567.891"}, "1234567.891", "EUR", "1,234,567.891 EUR"),
        (literal_currency, {"amount": -0.1}, "0.1", "EUR", "0.10 EUR"),
        (no_currency, {"amount": "7"}, "7", "USD", "7.00 USD"),
        (no_currency, {"amount": "1e30"}, "1E+30", "USD", "1.000E+30 USD"),
    ]
    for tool, arguments, amount, currency, display in cases:
        assert radius(tool, arguments)["money"] == {
            "amount": amount,
            "currency": currency,
            "display": display,
        }, arguments


@pytest.mark.django_db
def test_what_is_not_an_amount_gives_no_money() -> None:
    tool = tool_with(blast_radius={"money": "/amount", "currency": "EUR"})
    for amount in (True, False, None, "NaN", "-Infinity", "12 EUR", "", "1" * 100, [5], {"v": 5}):
        assert radius(tool, {"amount": amount})["money"] is None, amount
    assert radius(tool, {})["money"] is None
    assert radius(tool_with(), {"amount": 5})["money"] is None  # no pointer: not read


# --- the rest, and the whole -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_whole_radius_and_its_one_line_summary() -> None:
    tool = tool_with(
        slug="payments-refund",
        blast_radius={"records": "/ids", "people": "/to", "money": "/amount", "currency": "/cur"},
        systems=["Stripe", "Ledger"],
        downstream_tools=["ledger-post", "customer-email"],
        reversible=False,
        data_classes=["pii", "financial"],
    )
    result = radius(
        tool,
        {
            "ids": [1, 2, 3],
            "to": ["ann@example.com", {"name": "Bob", "email": "bob@example.com"}],
            "amount": "1250",
            "cur": "eur",
            "memo": "cc ann@example.com",
        },
        granted={"customer-email"},
    )
    assert result == {
        "records": 3,
        "records_source": "arguments /ids",
        "people": ["ann@example.com", "bob@example.com"],
        "people_count": 2,
        "money": {"amount": "1250", "currency": "EUR", "display": "1,250.00 EUR"},
        "systems": ["Stripe", "Ledger"],
        "data_classes": [
            {"slug": "financial", "name": "Financial", "sensitivity": 4},
            {"slug": "pii", "name": "PII", "sensitivity": 3},
        ],
        "environment": "prod",
        "reversible": False,
        "downstream": [
            {"slug": "ledger-post", "granted": False},
            {"slug": "customer-email", "granted": True},
        ],
        "summary": (
            "3 records · 2 people · 1,250.00 EUR · Stripe, Ledger · Financial, PII · prod · "
            "irreversible · sets off 2 tools"
        ),
    }
    assert json.loads(json.dumps(result)) == result


@pytest.mark.django_db
def test_a_tool_that_says_nothing_reaches_one_record_of_its_own_system() -> None:
    tool = tool_with(slug="crm-lookup")
    result = radius(tool, {"id": "A-1"}, environment="dev")
    assert result["systems"] == ["Crm Lookup"]
    assert result["data_classes"] == []
    assert result["downstream"] == []
    assert result["summary"] == "1 record · Crm Lookup · dev · reversible"


@pytest.mark.django_db
def test_hostile_arguments_give_a_smaller_answer_never_an_error() -> None:
    tool = tool_with(blast_radius={"records": "/a/0/0", "people": "/a", "money": "/a"})
    deep: Any = "deep@example.com"
    for _ in range(50_000):
        deep = [deep]
    wide = {"b": ["x" * 200_000 + "@", *(f"u{i}@example.com" for i in range(20_000))]}
    for arguments in ({"a": deep}, wide, {"a": "@" * 100_000}, {"a": {"b": 1}}):
        result = radius(tool, arguments)
        json.dumps(result)
    assert radius(tool, {"a": deep})["people"] == []  # deeper than the walk reads
    # The walk for addresses stops at its node budget; what the pointer names is all counted.
    assert 9_000 < radius(tool, wide)["people_count"] < 10_000
    listed = radius(tool, {"a": [f"u{i}@example.com" for i in range(20_000)]})
    assert listed["people_count"] == 20_000
    assert len(listed["people"]) == PEOPLE_SHOWN_MAX


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    arguments=st.dictionaries(
        st.sampled_from(["ids", "to", "amount", "cur", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["email", "name", "0", "x"]), children, max_size=3
                )
            ),
            max_leaves=20,
        ),
    )
)
def test_any_arguments_give_a_json_radius(arguments: dict[str, Any]) -> None:
    tool = Tool.objects.filter(slug="any-arguments").first() or tool_with(
        slug="any-arguments",
        blast_radius={"records": "/ids", "people": "/to", "money": "/amount", "currency": "/cur"},
    )
    result = radius(tool, arguments)
    json.dumps(result, allow_nan=False)
    assert result["records"] >= 0
    assert result["summary"]


# --- the template -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_template_warns_of_money_and_irreversibility_and_escapes_values() -> None:
    tool = tool_with(
        blast_radius={"money": "/amount", "currency": "EUR"},
        systems=["<script>x</script>"],
        downstream_tools=["ledger-post"],
        reversible=False,
    )
    blast = radius(tool, {"amount": 99, "to": "<b>eve@example.com</b>"})
    html = render_to_string("approvals/partials/blast_radius.html", {"blast": blast})
    assert "<script>" not in html and "<b>" not in html
    assert '<span class="chip">&lt;script&gt;x&lt;/script&gt;</span>' in html
    assert '<span class="chip">eve@example.com</span>' in html
    assert (
        '<strong class="blast-warning blast-money badge badge--risk-high">99.00 EUR</strong>'
        in html
    )
    assert (
        '<strong class="blast-warning blast-irreversible badge badge--risk-critical">'
        "Irreversible</strong>" in html
    )
    assert "not granted to this agent" in html
    assert "<dt>Records</dt>" in html and "(assumed: nothing says how many)" in html


@pytest.mark.django_db
def test_the_template_says_when_nothing_is_known() -> None:
    html = render_to_string("approvals/partials/blast_radius.html", {"blast": {}})
    assert "Tether did not work out how far this step reaches" in html
    plain = radius(tool_with(), {"id": 1}, environment="dev")
    html = render_to_string("approvals/partials/blast_radius.html", {"blast": plain})
    assert "so one record is assumed" in html
    assert "Reversible" in html and "Irreversible" not in html
    assert "no amount in the arguments" in html
