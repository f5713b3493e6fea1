"""The automatic triggers' page: every role may look, only admins write; bad input is a 400
that says what to fix, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from apps.killswitch import trigger_services as rules
from apps.killswitch.models import KillSwitch, KillTrigger
from apps.killswitch.triggers import triggers_evaluate
from apps.runtime.decisions import DecisionRequest, decide

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..clients import console_client
from ..factories import make_agent

pytestmark = pytest.mark.django_db

LIST = reverse("killswitch:triggers")
GOOD = {
    "name": "Loop guard",
    "kind": "denials",
    "response": "kill_run",
    "threshold": "10",
    "window": "5",
    "window_unit": "min",
    "agent": "",
    "department": "",
}


def make_rule(org: Any, **fields: Any) -> KillTrigger:
    data = {"name": "Loop guard", "kind": "denials", "response": "kill_run", **fields}
    return rules.trigger_create(actor=org.admin, **data)


def test_an_admin_sees_the_empty_state_then_adds_a_rule(org):
    admin = console_client(org.admin)

    empty = admin.get(LIST)
    added = admin.post(LIST, GOOD, follow=True)

    assert empty.status_code == 200
    assert "No automatic triggers yet." in empty.content.decode()
    assert "Add a rule" in empty.content.decode()
    rule = KillTrigger.objects.get()
    assert (rule.threshold, rule.window_seconds, rule.created_by) == (10, 300, org.admin)
    page = added.content.decode()
    assert "Added “Loop guard”" in page and "10 or more within 5 min" in page and "Never" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": "0"}, "greater than or equal to 1"),
        ({"threshold": "ten"}, "Enter a whole number"),
        ({"window": "5", "window_unit": "s"}, "From 10 seconds to 1 day."),
        ({"window": "25", "window_unit": "h"}, "From 10 seconds to 1 day."),
        ({"window": "99999999999999999999", "window_unit": "h"}, "From 10 seconds to 1 day."),
        ({"kind": "drift_critical", "response": "kill_agent", "threshold": "3"}, "threshold is 1"),
        ({"kind": "drift_critical", "response": "kill_run", "threshold": "1"}, "not one run"),
        ({"department": "claims", "agent": "refunds-agent"}, "not both"),
        ({"agent": "no-such-agent"}, "Select a valid choice"),
        ({"kind": "weather"}, "Select a valid choice"),
        ({"name": ""}, "This field is required"),
    ],
)
def test_bad_input_is_a_400_that_says_what_to_fix(gated, org, change, message):  # noqa: F811
    answer = console_client(org.admin).post(LIST, {**GOOD, **change})

    assert answer.status_code == 400
    assert message in answer.content.decode()
    assert not KillTrigger.objects.exists()


def test_a_name_already_taken_is_refused_on_its_field(org):
    make_rule(org)

    answer = console_client(org.admin).post(LIST, {**GOOD, "name": "LOOP GUARD"})

    assert answer.status_code == 400
    assert "Another rule has this name" in answer.content.decode()


def test_other_roles_read_the_rules_but_every_write_is_a_403(gated, org):  # noqa: F811
    rule = make_rule(org)
    approver = console_client(org.approver)
    urls = [
        reverse("killswitch:trigger-edit", args=[rule.pk]),
        reverse("killswitch:trigger-delete", args=[rule.pk]),
    ]

    page = approver.get(LIST)

    assert page.status_code == 200
    assert "Loop guard" in page.content.decode() and "Add a rule" not in page.content.decode()
    assert approver.post(LIST, GOOD).status_code == 403
    for url in urls:
        assert approver.get(url).status_code == 403
        assert approver.post(url, GOOD).status_code == 403
    toggle = reverse("killswitch:trigger-toggle", args=[rule.pk])
    assert approver.post(toggle, {"enabled": "false"}).status_code == 403
    rule.refresh_from_db()
    assert rule.enabled and KillTrigger.objects.count() == 1
    assert console_client(org.outsider).get(LIST).status_code == 403  # no role at all
    assert console_client(org.admin).get(LIST).status_code == 200


def test_a_rule_over_an_agent_hidden_from_someone_is_not_shown_to_them(gated, org):  # noqa: F811
    make_rule(org, name="Refunds only", agent=gated.agent)
    make_rule(org, name="Everyone")

    page = console_client(org.other_owner).get(LIST).content.decode()

    assert "Everyone" in page and "Refunds only" not in page


def test_an_admin_edits_switches_off_and_deletes_after_confirming(gated, org):  # noqa: F811
    rule = make_rule(org, threshold=3, window_seconds=600)
    admin = console_client(org.admin)
    edit = reverse("killswitch:trigger-edit", args=[rule.pk])

    form = admin.get(edit)
    assert form.status_code == 200 and 'value="10"' in form.content.decode()  # 600 s = 10 min
    refused = admin.post(edit, {**GOOD, "threshold": "-1"})
    assert refused.status_code == 400
    admin.post(edit, {**GOOD, "response": "suspend_agent", "agent": gated.agent.slug})
    rule.refresh_from_db()
    assert (rule.response, rule.agent, rule.threshold) == ("suspend_agent", gated.agent, 10)

    off = admin.post(
        reverse("killswitch:trigger-toggle", args=[rule.pk]), {"enabled": "false"}, follow=True
    )
    assert "is off: it fires no more" in off.content.decode()
    rule.refresh_from_db()
    assert not rule.enabled

    delete = reverse("killswitch:trigger-delete", args=[rule.pk])
    confirm = admin.get(delete)
    assert confirm.status_code == 200 and "What deleting does" in confirm.content.decode()
    assert KillTrigger.objects.exists()
    gone = admin.post(delete, follow=True)
    assert "Deleted “Loop guard”" in gone.content.decode()
    assert not KillTrigger.objects.exists()


def test_unknown_rules_are_404(org):
    admin = console_client(org.admin)
    for rule_id in (999, 10**20):
        assert admin.get(reverse("killswitch:trigger-edit", args=[rule_id])).status_code == 404
        toggle = reverse("killswitch:trigger-toggle", args=[rule_id])
        assert admin.post(toggle, {"enabled": "true"}).status_code == 404


def test_each_rule_shows_when_it_last_fired_and_links_to_the_kills_it_caused(
    gated,  # noqa: F811
    org,
):
    rule = make_rule(org, threshold=1)
    request = DecisionRequest(action="tool.invoke", tool="no-such-tool", tool_action="read")
    assert decide(run=gated.run, request=request).disposition == "deny"
    triggers_evaluate()
    kill = KillSwitch.objects.get()

    page = console_client(org.admin).get(LIST).content.decode()

    assert reverse("killswitch:detail", args=[kill.pk]) in page
    assert f"Kill #{kill.pk}" in page and "engaged" in page
    assert "1 kill engaged, 1 still in force" in page
    assert "Never" not in page
    rule.refresh_from_db()
    assert rule.last_fired_at is not None
    # The kill-switch list links here.
    assert LIST in console_client(org.admin).get(reverse("killswitch:list")).content.decode()


def test_the_kill_switch_list_still_takes_its_scopes(org):
    """``kill/triggers/`` is the page, not a scope named "triggers"."""
    make_agent(org.claims, org.owner, slug="triggers")
    admin = console_client(org.admin)

    assert admin.get(LIST).status_code == 200
    confirm = reverse("killswitch:confirm", args=["agent"]) + "?target=triggers"
    assert admin.get(confirm).status_code == 200
