"""The kill switch's console: the confirmation names the blast radius and needs a reason."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.killswitch.models import KillSwitch

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..clients import console_client

pytestmark = pytest.mark.django_db


def test_the_owner_confirms_with_a_reason_and_the_agents_runs_stop(gated, org):  # noqa: F811
    url = reverse("killswitch:confirm", args=["agent"]) + f"?target={gated.agent.slug}"
    client = console_client(org.owner)

    page = client.get(url)
    no_reason = client.post(url, {"target": gated.agent.slug, "reason": ""})
    assert no_reason.status_code == 400 and not KillSwitch.objects.exists()
    pressed = client.post(url, {"target": gated.agent.slug, "reason": "Refund loop"}, follow=True)

    assert page.status_code == 200
    assert "1 running run</strong> of <strong>1 agent" in page.content.decode()
    assert "1 run killed" in pressed.content.decode()
    gated.run.refresh_from_db()
    assert gated.run.state == "killed"


def test_release_needs_a_reason_and_outsiders_cannot_press(gated, org):  # noqa: F811
    admin = console_client(org.admin)
    admin.post(reverse("killswitch:confirm", args=["global"]), {"reason": "Drill"})
    kill = KillSwitch.objects.get()

    assert (
        console_client(org.approver).get(reverse("killswitch:confirm", args=["global"])).status_code
        == 404
    )
    assert (
        console_client(org.other_owner)
        .get(reverse("killswitch:confirm", args=["agent"]) + f"?target={gated.agent.slug}")
        .status_code
        == 404
    )
    assert admin.get(reverse("killswitch:confirm", args=["nonsense"])).status_code == 404
    assert (
        admin.get(reverse("killswitch:confirm", args=["run"]) + "?target=not-a-uuid").status_code
        == 404
    )
    admin.post(reverse("killswitch:release", args=[kill.pk]), {"reason": ""})
    kill.refresh_from_db()
    assert kill.engaged
    admin.post(reverse("killswitch:release", args=[kill.pk]), {"reason": "Drill over"})
    kill.refresh_from_db()
    assert not kill.engaged


def test_pressing_opens_the_incident_page_with_what_was_stopped(gated, org):  # noqa: F811
    from apps.registry import services as registry
    from apps.registry.models import MemoryStore

    store = MemoryStore.objects.create(name="Notes", slug="refund-notes", store_class="durable")
    registry.memory_binding_set(
        actor=org.owner, agent=gated.agent, store=store, access="read_write"
    )
    gated.ask(tool="crm-lookup", action="read", arguments={})  # a step before the kill
    url = reverse("killswitch:confirm", args=["agent"]) + f"?target={gated.agent.slug}"
    client = console_client(org.owner)
    assert "refund-notes" in client.get(url).content.decode()  # the freeze is in the blast radius

    pressed = client.post(
        url,
        {"target": gated.agent.slug, "reason": "Refund loop", "memory_reads": "deny"},
        follow=True,
    )

    kill = KillSwitch.objects.get()
    assert pressed.redirect_chain[-1][0] == reverse("killswitch:detail", args=[kill.pk])
    page = pressed.content.decode()
    assert "Refund loop" in page and "refund-notes" in page and "reads are refused too" in page
    assert str(gated.run.pk)[:8] in page and "crm-lookup" in page  # its last step before the kill
    assert "killswitch.engaged" in page  # the audit trail
    assert kill.memory_reads == "deny"
    # Others see only what they may read; a bad value is refused with a message, not a 500.
    assert console_client(org.other_owner).get(pressed.redirect_chain[-1][0]).status_code == 404
    bad = client.post(url, {"target": gated.agent.slug, "reason": "x", "memory_reads": "maybe"})
    assert bad.status_code == 400 and "maybe" in bad.content.decode()


def test_a_departments_agent_list_carries_its_kill_switch_for_admins(gated, org):  # noqa: F811
    url = reverse("registry:agent-list") + f"?department={org.claims.slug}"
    stop = reverse("killswitch:confirm", args=["department"]) + f"?target={org.claims.slug}"
    assert stop in console_client(org.admin).get(url).content.decode()
    assert stop not in console_client(org.owner).get(url).content.decode()
    assert (
        stop not in console_client(org.admin).get(reverse("registry:agent-list")).content.decode()
    )
    confirm = console_client(org.admin).get(stop)
    assert confirm.status_code == 200 and "1 running run" in confirm.content.decode()
