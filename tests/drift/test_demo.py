"""The demo's drift: a knowledge-base refresh that moved the adjudicator's approval rate,
caught by the drift job and named in its alert, loaded once."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.drift.constants import Metric
from apps.drift.models import DriftAlert
from apps.registry.demo import demo_load

pytestmark = pytest.mark.django_db


def test_the_demo_shows_a_drift_that_names_the_knowledge_base_refresh(capsys):
    demo_load()
    call_command("load_demo_costs")  # as scripts/demo.sh: the agents' earlier versions ran too
    call_command("load_demo_drift")
    alert = DriftAlert.objects.get(metric=Metric.OUTCOME)
    assert alert.agent.slug == "claims-adjudicator"
    assert alert.subject == "approved" and alert.current_value > alert.baseline_value + 0.05
    assert "claims-kb-2026-10 → claims-kb-2026-11" in alert.suspected_change
    call_command("load_demo_drift")
    assert DriftAlert.objects.filter(metric=Metric.OUTCOME).count() == 1
    assert "there already" in capsys.readouterr().out
