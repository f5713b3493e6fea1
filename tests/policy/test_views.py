"""The policy console: who sees what, the editor's inline errors, history and try-it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from apps.policy.models import Policy
from apps.policy.services import policy_create, policy_update

from ..clients import console_client as client_for

pytestmark = pytest.mark.django_db

FORBID = (
    'forbid(principal, action == Action::"tool.invoke", resource == Tool::"refund-issue")\n'
    "  when { context has amount && context.amount > 1000 };"
)


def title_of(response: Any) -> str:
    match = re.search(r"<title>(.*?)</title>", response.content.decode(), re.S)
    assert match
    return match.group(1).strip()


@pytest.fixture
def large_refunds(org: Any) -> Policy:
    return policy_create(
        actor=org.admin,
        data={"name": "Large refunds", "slug": "large-refunds", "text": FORBID},
    )


def try_data(**extra: Any) -> dict[str, Any]:
    data = {
        "agent": "claims-triage",
        "action": "tool.invoke",
        "resource": "refund-issue",
        "environment": "prod",
        "tool_action": "issue",
        "amount": "5000",
    }
    data.update(extra)
    return data


# --- who may see what ------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_admins_and_auditors_read_policies(org: Any, large_refunds: Policy, persona: str) -> None:
    client = client_for(getattr(org, persona))
    listing = client.get(reverse("policy:list"))
    assert listing.status_code == 200
    assert title_of(listing) == "Policies · Tether"
    assert "Large refunds" in listing.content.decode()
    assert ">Policies</a>" in listing.content.decode()  # the nav link
    detail = client.get(large_refunds.get_absolute_url())
    assert detail.status_code == 200
    assert title_of(detail) == "Large refunds · Policies · Tether"
    can_write = "Edit policy" in detail.content.decode()
    assert can_write == (persona == "admin")


@pytest.mark.parametrize("persona", ["owner", "approver", "finance"])
def test_other_roles_get_403_for_lists_and_404_for_a_policy(
    org: Any, large_refunds: Policy, persona: str
) -> None:
    client = client_for(getattr(org, persona))
    assert client.get(reverse("policy:list")).status_code == 403
    assert client.get(reverse("policy:try")).status_code == 403
    assert client.get(reverse("policy:effective")).status_code == 403
    assert client.get(large_refunds.get_absolute_url()).status_code == 404
    assert client.post(reverse("policy:toggle", args=["large-refunds"])).status_code == 404
    assert ">Policies</a>" not in client.get(reverse("home")).content.decode()


def test_an_outsider_sees_the_no_role_page_and_a_stranger_logs_in(
    client: Any, org: Any, large_refunds: Policy
) -> None:
    outsider = client_for(org.outsider)
    assert outsider.get(reverse("policy:list")).status_code == 403
    assert outsider.get(large_refunds.get_absolute_url()).status_code == 404
    response = client.get(reverse("policy:list"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_auditors_cannot_write(org: Any, large_refunds: Policy) -> None:
    client = client_for(org.auditor)
    assert client.get(reverse("policy:create")).status_code == 403
    assert client.post(reverse("policy:create"), {"name": "x"}).status_code == 403
    assert client.get(reverse("policy:edit", args=["large-refunds"])).status_code == 403
    assert client.post(reverse("policy:toggle", args=["large-refunds"])).status_code == 403
    assert Policy.objects.get().enabled


# --- writing ---------------------------------------------------------------------------------


def test_the_editor_shows_cedar_errors_inline_and_saves_nothing(org: Any) -> None:
    client = client_for(org.admin)
    response = client.post(
        reverse("policy:create"),
        {
            "name": "Large refunds",
            "slug": "large-refunds",
            "text": FORBID.rstrip(";"),
            "enabled": "on",
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert 'id="id_text_error"' in page
    assert "Line 2, column 55: Syntax error: unexpected end of input." in page
    assert not Policy.objects.exists()


def test_an_admin_writes_edits_disables_and_compares_a_policy(org: Any) -> None:
    client = client_for(org.admin)
    assert title_of(client.get(reverse("policy:create"))) == "Write a policy · Policies · Tether"
    response = client.post(
        reverse("policy:create"),
        {"name": "Large refunds", "slug": "large-refunds", "text": FORBID, "enabled": "on"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("policy:detail", args=["large-refunds"])
    edited = FORBID.replace("1000", "500")
    response = client.post(
        reverse("policy:edit", args=["large-refunds"]),
        {"name": "Large refunds", "text": edited, "enabled": "on", "comment": "Lower limit"},
    )
    assert response.status_code == 302
    assert client.post(reverse("policy:toggle", args=["large-refunds"])).status_code == 302
    policy = Policy.objects.get()
    assert (policy.text, policy.enabled, policy.versions.count()) == (edited, False, 2)
    detail = client.get(policy.get_absolute_url()).content.decode()
    assert "Lower limit" in detail and "Disabled" in detail
    diff = client.get(reverse("policy:diff", args=["large-refunds"]), {"a": 1, "b": 2})
    assert diff.status_code == 200
    page = diff.content.decode()
    assert "+1 added" in page and "\u22121 removed" in page
    assert "context.amount &gt; 500" in page
    assert client.get(reverse("policy:diff", args=["large-refunds"]), {"a": "x"}).status_code == 400
    assert (
        client.get(reverse("policy:diff", args=["large-refunds"]), {"a": 1, "b": 9}).status_code
        == 404
    )


@pytest.mark.parametrize(
    "text",
    ["permit(principal, action, resource);\x00", "x" * 20_001],
)
def test_hostile_policy_text_is_a_form_error_not_a_500(org: Any, text: str) -> None:
    response = client_for(org.admin).post(
        reverse("policy:create"), {"name": "Bad", "slug": "bad", "text": text}
    )
    assert response.status_code == 400
    assert not Policy.objects.exists()


# --- try it ----------------------------------------------------------------------------------


def test_try_it_shows_the_decision_and_the_policy_that_fired(
    org: Any, registry: Any, large_refunds: Policy
) -> None:
    client = client_for(org.admin)
    page = client.post(reverse("policy:try"), try_data()).content.decode()
    assert "badge--decision-deny" in page and '<code class="policy-id">large-refunds</code>' in page
    fragment = client.post(reverse("policy:try"), try_data(amount="10"), HTTP_HX_REQUEST="true")
    assert "<html" not in fragment.content.decode()
    assert "badge--decision-allow" in fragment.content.decode()
    assert "registry.grant.claims-triage.refund-issue" in fragment.content.decode()


def test_try_it_with_a_draft_stands_in_for_the_saved_text(
    org: Any, registry: Any, large_refunds: Policy
) -> None:
    client = client_for(org.auditor)
    looser = FORBID.replace("1000", "9000")
    page = client.post(
        reverse("policy:try"), try_data(text=looser, policy="large-refunds"), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "badge--decision-allow" in page  # 5000 is under the draft's limit
    broken = client.post(
        reverse("policy:try"),
        try_data(text="forbid(;", policy="large-refunds"),
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "The draft does not compile" in broken and "Line 1, column" in broken


def test_try_it_says_what_is_missing(org: Any, registry: Any) -> None:
    response = client_for(org.admin).post(reverse("policy:try"), try_data(agent="", amount="lots"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "Fill in the request first" in page and "Enter a whole number." in page


def test_try_it_offers_only_agents_the_person_can_see(org: Any, registry: Any) -> None:
    from ..factories import make_agent

    make_agent(org.payments, org.other_owner, "payments-bot")
    page = client_for(org.admin).get(reverse("policy:try")).content.decode()
    assert "payments-bot" in page and "claims-triage" in page
    resources = client_for(org.admin).get(reverse("policy:try-resource"), {"action": "memory.read"})
    assert "case-notes" in resources.content.decode()
    assert resources.content.decode().startswith("<datalist")
    assert "refund-issue" not in resources.content.decode()


def test_the_effective_set_lists_baseline_admin_and_an_agents_registry_statements(
    org: Any, registry: Any, large_refunds: Policy
) -> None:
    client = client_for(org.auditor)
    page = client.get(reverse("policy:effective"), {"agent": "claims-triage"}).content.decode()
    for statement_id in (
        "baseline.model-call",
        "baseline.forbidden-store-write",
        "large-refunds",
        "registry.grant.claims-triage.crm-lookup",
        "registry.memory.claims-triage.case-notes",
    ):
        assert f'<code class="policy-id">{statement_id}</code>' in page
    assert "entity Agent in [Team, Department]" in page
    ignored = client.get(reverse("policy:effective"), {"agent": "<script>"})
    assert ignored.status_code == 200


def test_the_list_counts_statements_in_force(org: Any, large_refunds: Policy) -> None:
    policy_update(actor=org.admin, policy=large_refunds, data={"enabled": False})
    policy_create(
        actor=org.admin,
        data={
            "name": "Two rules",
            "slug": "two-rules",
            "text": FORBID + '\npermit(principal, action == Action::"model.call", resource);',
        },
    )
    page = client_for(org.admin).get(reverse("policy:list")).content.decode()
    assert "1 forbid" in page and "1 permit" in page and "not in force" in page
    empty = client_for(org.admin).get(reverse("policy:list"), {"q": "nothing-like-this"})
    assert "No policy matches" in empty.content.decode()
