"""The demo's approval requests: real asks of demo agents, waiting in the approver's inbox."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.accounts.models import User
from apps.approvals import selectors
from apps.approvals.models import ApprovalRequest
from apps.registry.demo import demo_load

pytestmark = pytest.mark.django_db


def test_demo_requests_wait_in_the_demo_approvers_inbox_with_a_preview(capsys):
    demo_load()
    call_command("load_demo_runs")
    call_command("load_demo_approvals")

    pending = list(ApprovalRequest.objects.filter(status="pending"))
    assert pending
    assert all(a.preview for a in pending)
    assert {a.preview["format"] for a in pending} >= {"json", "table"}
    assert {a.risk_class for a in pending} <= {"high", "critical"}
    approver = User.objects.get(username="approver")
    assert selectors.inbox_counts(user=approver)["all"] >= 1

    call_command("load_demo_approvals")
    assert ApprovalRequest.objects.filter(status="pending").count() == len(pending)
    assert "exist already" in capsys.readouterr().out
