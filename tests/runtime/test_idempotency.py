"""A retried request (same Idempotency-Key) gets its first answer and is charged once."""

from __future__ import annotations

import pytest

from apps.runtime.counters import counter_store
from apps.runtime.decisions import DecisionRequest, decide, forget_caches
from apps.runtime.models import Budget, BudgetLedgerEntry, Decision

from .conftest import start_run
from .test_api import DECIDE, bearer

pytestmark = pytest.mark.django_db


def lookup(customer: str, key: str = "") -> DecisionRequest:
    return DecisionRequest(
        action="tool.invoke",
        tool="crm-lookup",
        tool_action="read",
        arguments={"customer_id": customer},
        idempotency_key=key,
    )


@pytest.fixture
def calls_budget(setup) -> Budget:
    budget = Budget.objects.create(
        name="calls", kind="tool_calls", scope="run", agent=setup.agent, limit=3
    )
    forget_caches()
    return budget


def test_a_retry_with_the_same_key_gets_the_first_decision_and_is_not_charged_again(
    setup, calls_budget
):
    run, _ = start_run(setup)
    first = decide(run=run, request=lookup("c-1", key="k-1"))
    again = decide(run=run, request=lookup("c-1", key="k-1"))
    assert first.disposition == "allow"
    assert again.pk == first.pk
    assert Decision.objects.filter(run=run).count() == 1
    assert BudgetLedgerEntry.objects.filter(budget=calls_budget).count() == 1
    # Two more distinct requests fit the budget of 3; a retry used none of it.
    assert [decide(run=run, request=lookup(c)).disposition for c in ("c-2", "c-3", "c-4")] == [
        "allow",
        "allow",
        "deny",
    ]


def test_different_keys_are_different_requests(setup, calls_budget):
    run, _ = start_run(setup)
    answers = [decide(run=run, request=lookup("c-1", key=f"k-{i}")) for i in range(2)]
    assert answers[0].pk != answers[1].pk
    assert BudgetLedgerEntry.objects.filter(budget=calls_budget).count() == 2


def test_a_retry_while_the_first_attempt_is_unrecorded_is_deferred_not_allowed(setup, calls_budget):
    run, _ = start_run(setup)
    # The first attempt reserved (its key is set) but its row is not in the table yet.
    counter_store().reserve([_key_counter(run, "k-9")])
    answer = decide(run=run, request=lookup("c-1", key="k-9"))
    assert (answer.disposition, answer.reasons) == ("defer", ["decision_pending"])
    assert answer.retry_after_seconds == 1
    assert (
        answer.idempotency_key == ""
    )  # it is not the first answer; a later retry still finds that
    assert not BudgetLedgerEntry.objects.filter(budget=calls_budget).exists()


def test_the_api_takes_the_key_from_the_idempotency_key_header(setup):
    _, token = start_run(setup)
    body = {
        "action": "tool.invoke",
        "tool": "crm-lookup",
        "tool_action": "read",
        "arguments": {"customer_id": "c-1"},
    }
    client = bearer(token)
    first = client.post(DECIDE, body, format="json", HTTP_IDEMPOTENCY_KEY="req-1")
    again = client.post(DECIDE, body, format="json", HTTP_IDEMPOTENCY_KEY="req-1")
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert first.json()["retry_after"] is None


@pytest.mark.parametrize("key", ["", "x" * 65, "has space", "ünïcode"])
def test_a_malformed_idempotency_key_is_a_400_that_says_what_is_allowed(setup, key):
    _, token = start_run(setup)
    answer = bearer(token).post(
        DECIDE,
        {"action": "tool.invoke", "tool": "crm-lookup", "arguments": {"customer_id": "c"}},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert answer.status_code == 400
    assert "Idempotency-Key" in answer.json()["error"]["message"]


def _key_counter(run, key):
    from apps.runtime.decisions import _idempotency_guard

    return _idempotency_guard(run, key).counter


def test_a_retry_after_the_run_was_killed_is_refused_not_given_its_first_allow(setup):
    from apps.killswitch.services import kill_engage

    run, _ = start_run(setup)
    first = decide(run=run, request=lookup("c-1", key="k-1"))
    kill_engage(actor=None, scope="run", run=run, reason="Loop", trigger="test")
    run.state = "running"  # as a process that cached the run before the kill still holds it

    again = decide(run=run, request=lookup("c-1", key="k-1"))

    assert first.disposition == "allow"
    assert (again.disposition, again.reasons) == ("deny", ["run_killed"])
    assert again.pk != first.pk
