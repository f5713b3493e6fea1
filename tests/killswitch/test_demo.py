"""The demo's incident: a looping demo run stopped by an automatic kill, once."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.accounts.models import User
from apps.killswitch import selectors
from apps.killswitch.models import KillSwitch
from apps.registry.demo import demo_load

pytestmark = pytest.mark.django_db


def test_the_demo_stops_one_looping_run_automatically(capsys, django_capture_on_commit_callbacks):
    demo_load()
    call_command("load_demo_runs")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo_kills")

    kill = KillSwitch.objects.get()
    assert kill.automatic and kill.scope == "run" and kill.runs_killed == 1
    assert kill.run is not None and kill.run.state == "killed"
    incident = selectors.kill_incident(kill=kill)
    [stopped] = incident.runs
    assert [d.disposition for d in stopped.last_steps] == ["deny"] * 5  # the newest five
    admin = User.objects.get(username="admin")
    assert selectors.kills_for_user(user=admin).filter(pk=kill.pk).exists()

    call_command("load_demo_kills")
    assert KillSwitch.objects.count() == 1
    assert "exists already" in capsys.readouterr().out
