"""The demo's runs: real decisions and spans of a few demo agents, loaded once."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.registry.demo import demo_load
from apps.runtime.models import Decision, Run
from apps.traces.models import Span, Trace

pytestmark = pytest.mark.django_db


def test_demo_runs_hold_allowed_and_refused_decisions_and_their_spans(capsys):
    demo_load()
    call_command("load_demo_runs")
    runs = list(Run.objects.all())
    assert len(runs) == 3 and all(run.state == "finished" for run in runs)
    for run in runs:
        dispositions = set(Decision.objects.filter(run=run).values_list("disposition", flat=True))
        assert dispositions == {"allow", "deny"}, run.agent.slug
        assert Span.objects.filter(run=run).count() >= 3
        assert Trace.objects.get(run=run).input_tokens == 1840
    call_command("load_demo_runs")
    assert Run.objects.count() == 3
    assert "Runs exist already" in capsys.readouterr().out
