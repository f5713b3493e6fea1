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
    owner.get_by_text("1 run killed").wait_for()
    shoot(owner, "killswitch-engaged")
    gated.run.refresh_from_db()
    assert gated.run.state == "killed"

    admin.goto("/kill/")
    admin.get_by_label("Why release it").fill("Fixed in v5")
    admin.once("dialog", lambda dialog: dialog.accept())
    admin.get_by_role("button", name="Release").click()
    admin.get_by_text("Released: new runs may start again").wait_for()
    shoot(admin, "killswitch-released")
