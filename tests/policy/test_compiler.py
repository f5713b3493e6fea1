"""Admin policy text: checked against the schema, with what is wrong and where."""

from __future__ import annotations

import pytest

from apps.policy.compiler import PolicyTextInvalid, parse_policy_text
from apps.policy.constants import POLICY_STATEMENTS_MAX, POLICY_TEXT_MAX
from apps.policy.schema import ATTRIBUTES, SCHEMA_TEXT


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyTextInvalid) as caught:
        parse_policy_text(text, slug="p")
    return [str(p) for p in caught.value.problems]


def test_a_missing_semicolon_is_pointed_at_the_end_of_the_statement() -> None:
    text = (
        "// Big refunds need a person.\n"
        'forbid(principal, action == Action::"tool.invoke", resource)\n'
        "  when { context has amount && context.amount > 1000 }"
    )
    assert problems(text) == [
        "Line 3, column 55: Syntax error: unexpected end of input. Does the statement end in ';'?"
    ]


def test_a_syntax_error_names_its_line_and_column_in_the_right_statement() -> None:
    text = (
        "permit(principal, action, resource);\n"
        "forbid(principal, action, resource) when { 1 + };\n"
        "permit(principal, action, resource) when { principal.tags = 3 };"
    )
    assert problems(text) == [
        "Line 2, column 48: Syntax error: unexpected token `}`.",
        "Line 3, column 59: Syntax error: '=' is not a valid operator in Cedar.",
    ]


def test_a_string_where_an_entity_belongs_is_pointed_at() -> None:
    assert problems('forbid(principal == "alice", action, resource);') == [
        "Line 1, column 21: Syntax error: expected an entity uid or matching template slot, "
        'found literal `"alice"`.'
    ]


def test_a_misspelt_context_attribute_is_refused_with_a_suggestion() -> None:
    text = (
        'permit(principal, action == Action::"tool.invoke", resource)\n'
        '  when { context.enviroment == "prod" };'
    )
    assert problems(text) == [
        "Line 2, column 18: the context has no attribute `enviroment` (for tool.invoke). "
        "Did you mean `environment`?"
    ]


def test_the_optional_amount_must_be_checked_before_it_is_compared() -> None:
    [message] = problems("forbid(principal, action, resource) when { context.amount > 1000 };")
    assert message.startswith("Line 1, column 52: unable to guarantee safety of access to ")
    assert "(for every action)" in message
    assert "`context has amount && context.amount > 1000`" in message


def test_an_attribute_of_one_resource_type_needs_the_type_narrowed() -> None:
    [message] = problems(
        'permit(principal, action, resource) when { resource.risk_class == "low" };'
    )
    assert "not defined on Agent, MemoryStore, Model" in message
    assert "`resource is Tool && resource.risk_class" in message


def test_an_unknown_action_is_refused() -> None:
    assert problems('forbid(principal, action == Action::"tool.delete", resource);')[0] == (
        'Line 1, column 29: unrecognized action `Action::"tool.delete"`.'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Write at least one permit or forbid statement"),
        ("  // only a comment\n", "Write at least one permit or forbid statement"),
        ("permit(principal == ?principal, action, resource);", "Templates"),
        ("permit(principal, action, resource);" * (POLICY_STATEMENTS_MAX + 1), "at most"),
        ("x" * (POLICY_TEXT_MAX + 1), "longer than"),
    ],
)
def test_texts_tether_cannot_use_are_refused(text: str, message: str) -> None:
    assert message in problems(text)[0]


def test_statements_are_named_by_the_policy_slug_and_keep_their_line() -> None:
    [one] = parse_policy_text(
        'permit(principal, action == Action::"model.call", resource);', slug="p"
    )
    assert (one.id, one.effect, one.line) == ("p", "permit", 1)
    text = (
        "// first\n"
        'forbid(principal, action == Action::"memory.write", resource);\n'
        "\n"
        '// a ";" in a comment does not split\n'
        'permit(principal, action == Action::"model.call", resource) when { "a;b" != "" };\n'
    )
    statements = parse_policy_text(text, slug="p")
    assert [(s.id, s.effect, s.line) for s in statements] == [
        ("p.1", "forbid", 2),
        ("p.2", "permit", 5),
    ]
    assert statements[1].text.startswith('permit(principal, action == Action::"model.call"')


def test_the_hint_table_matches_the_schema() -> None:
    for type_name, attributes in ATTRIBUTES.items():
        assert type_name in SCHEMA_TEXT
        for attribute in attributes:
            assert f"  {attribute}" in SCHEMA_TEXT, attribute


def test_the_examples_in_the_docs_are_valid_policies() -> None:
    import re
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    blocks = re.findall(r"```cedar\n(.*?)```", docs, re.S)
    assert blocks
    for block in blocks:
        assert len(parse_policy_text(block, slug="example")) >= 1
