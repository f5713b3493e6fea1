"""The kill switch's console in real Chromium: an owner stops their agent from its page,
reads the blast radius, gives a reason; the list shows it engaged; an admin releases it."""

from __future__ import annotations

from typing import Any

import pytest

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..factories import PASSWORD
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_owner_stops_their_agent_and_an_admin_releases_it(
    org: Any,
    gated: Any,  # noqa: F811
    new_page: Any,
    shoot: Any,
) -> None:
    admin = new_page()
    log_in(admin, "ada", PASSWORD)
    admin.goto("/kill/")
    admin.get_by_text("Nothing is stopped.").wait_for()
    shoot(admin, "killswitch-empty")

    owner = new_page()
    log_in(owner, "alice", PASSWORD)
    owner.goto(f"/agents/{gated.agent.slug}/")
    owner.get_by_role("link", name="Kill switch…").click()
    assert owner.title() == "Kill switch: an agent (all its runs) · Tether"
    assert "1 running run of 1 agent" in owner.locator("#blast-title + p").inner_text()
    owner.get_by_label("Reason").fill("It keeps refunding the same order.")
    shoot(owner, "killswitch-confirm")
    owner.get_by_role("button", name="Stop 1 run now").click()
    owner.get_by_text("Stopped: 1 run killed").wait_for()  # on the incident page it opened
    shoot(owner, "killswitch-engaged")
    gated.run.refresh_from_db()
    assert gated.run.state == "killed"

    admin.goto("/kill/")
    admin.get_by_label("Why release it").fill("Fixed in v5")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Release").click()
    admin.get_by_text("Released: new runs may start again").wait_for()
    shoot(admin, "killswitch-released")


def test_the_incident_of_a_wide_kill_lists_every_stopped_run(
    org: Any,
    gated: Any,  # noqa: F811
    new_page: Any,
    shoot: Any,
) -> None:
    from apps.killswitch import services as kills
    from apps.runtime import services as runtime

    for n in range(24):  # 25 running runs in all, more than the page gives steps for
        runtime.run_start(credential=gated.run.credential, task=f"Refund order B-{n}")
    gated.ask(tool="crm-lookup", action="read", arguments={})
    kill = kills.kill_engage(actor=org.admin, scope="global", reason="Payments incident drill")

    admin = new_page()
    log_in(admin, "ada", PASSWORD)
    admin.goto(f"/kill/{kill.pk}/")
    admin.get_by_role("heading", name="Runs stopped (25)").wait_for()
    assert admin.locator("#runs-title ~ div tbody tr, #runs-title").count() >= 1
    rows = admin.locator("section[aria-labelledby=runs-title] tbody tr")
    assert rows.count() == 25
    assert "see its timeline" in rows.nth(24).inner_text()  # past the first 20: no steps shown
    shoot(admin, "killswitch-incident-long")
