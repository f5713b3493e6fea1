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
