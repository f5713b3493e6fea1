"""The SDK against a live Tether over HTTP: what the registry grants runs, nothing else does."""

from __future__ import annotations

import asyncio

import pytest
import tether
from django.db.models import Sum

from apps.runtime import services as runtime
from apps.runtime.models import BudgetLedgerEntry, Decision, Run

pytestmark = [
    pytest.mark.django_db(transaction=True),
]


def test_a_granted_tool_runs_and_an_ungranted_one_is_denied_before_its_body(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    ran: list[tuple[str, object]] = []

    @client.governed_tool("crm-lookup", action="read")
    def crm_lookup(customer_id: str) -> dict[str, str]:
        ran.append(("crm-lookup", customer_id))
        return {"customer_id": customer_id, "name": "Ada Lovelace"}

    @client.governed_tool("payment-refund", action="create")
    def payment_refund(order: str, amount: float) -> None:
        ran.append(("payment-refund", order))

    with client.run("Triage claim 4711") as run:
        assert crm_lookup("c-42") == {"customer_id": "c-42", "name": "Ada Lovelace"}
        with pytest.raises(tether.Denied) as caught:
            payment_refund(order="o-1", amount=50)

    assert ran == [("crm-lookup", "c-42")]
    assert caught.value.reasons == ("tool_not_granted",)
    assert "payment-refund" in caught.value.reasoning
    recorded = Decision.objects.filter(run_id=run.id).order_by("id")
    assert [(d.target, d.disposition, d.reasons) for d in recorded] == [
        ("crm-lookup", "allow", ["allowed"]),
        ("payment-refund", "deny", ["tool_not_granted"]),
    ]
    stored = Run.objects.get(pk=run.id)
    assert (stored.state, stored.task) == ("finished", "Triage claim 4711")


def test_a_run_carries_what_the_registry_says(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    with client.run("Triage claim 4711", intent="triage") as run:
        assert run.agent == "claims-triage"
        assert run.environment == "prod"
        assert run.failure_posture == live_agent.agent.failure_posture
        assert run.envelope.allows_tool("crm-lookup", "read")
        assert not run.envelope.allows_tool("payment-refund", "create")
        assert run.envelope.memory == {"case-notes": "read"}
        assert run.token.startswith("tth_run_")
        assert run.expires_at is not None
        assert run.started_at is not None


def test_an_exception_in_the_block_fails_the_run_in_tether(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    with pytest.raises(ZeroDivisionError), client.run("Triage claim 4711") as run:
        _ = 1 / 0
    stored = Run.objects.get(pk=run.id)
    assert (stored.state, stored.outcome) == ("failed", "ZeroDivisionError")


def test_arguments_failing_the_tools_schema_are_denied_naming_the_field(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    with client.run("Triage") as run, pytest.raises(tether.Denied) as caught:
        run.check_tool("crm-lookup", {"customer_id": 42}, action="read")
    assert caught.value.reasons == ("arguments_invalid",)
    assert "customer_id" in caught.value.reasoning


def test_model_calls_reserve_tokens_and_reported_usage_reconciles_them(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    with client.run("Summarise claim 4711") as run:
        decision = run.check_model("gpt-4o-mini", 1000, 200)
        assert decision.model == "gpt-4o-mini"
        assert decision.budgets["tokens per day"].used == 1200
        budgets = run.report_usage(decision, 300, 50)
        again = run.check_model("gpt-4o-mini", 10, 0)
    assert budgets is not None
    assert budgets["tokens per day"].used == 350
    assert budgets["tokens per day"].remaining == 100_000 - 350
    assert again.budgets["tokens per day"].used == 360
    ledger = BudgetLedgerEntry.objects.filter(budget__name="tokens per day")
    assert ledger.aggregate(total=Sum("amount"))["total"] == 360


def test_tool_calls_count_against_the_run_budget(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    with client.run("Triage") as run:
        first = run.check_tool("crm-lookup", {"customer_id": "c-1"}, action="read")
        second = run.check_tool("crm-lookup", {"customer_id": "c-2"}, action="read")
    assert first.budgets["tool calls per run"].used == 1
    assert second.budgets["tool calls per run"].used == 2
    assert second.budgets["tool calls per run"].remaining == 8


def test_memory_and_delegation_checks_reach_the_decision_service(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    with client.run("Triage") as run:
        assert run.check_memory("case-notes").disposition == "allow"
        with pytest.raises(tether.Denied) as write:
            run.check_memory("case-notes", write=True)
        with pytest.raises(tether.Denied) as delegate:
            run.check_delegate("fraud-screen")
    assert write.value.reasons == ("memory_write_not_granted",)
    assert delegate.value.reasons == ("delegation_not_allowed",)


def test_a_heartbeat_extends_the_run_token(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    with client.run("Triage") as run:
        before = Run.objects.get(pk=run.id).token_expires_at
        assert run.expires_at == before
        run.heartbeat()
        stored = Run.objects.get(pk=run.id)
        assert run.expires_at == stored.token_expires_at
    assert stored.token_expires_at > before
    assert stored.last_heartbeat_at is not None


def test_a_revoked_credential_ends_the_run_and_its_checks(live_agent) -> None:
    client = tether.Client(live_agent.url, live_agent.key)
    ran = []

    @client.governed_tool("crm-lookup", action="read")
    def crm_lookup(customer_id: str) -> None:
        ran.append(customer_id)

    with client.run("Triage") as run:
        crm_lookup("c-1")
        runtime.credential_revoke(actor=live_agent.owner, credential=live_agent.credential)
        with pytest.raises(tether.RunEnded):
            crm_lookup("c-2")
        assert run.ended
    assert ran == ["c-1"]
    assert Run.objects.get(pk=run.id).state == "killed"
    with pytest.raises(tether.Unauthorized), client.run("Triage again"):
        pass


def test_a_wrong_agent_key_is_unauthorized(live_agent) -> None:
    client = tether.Client(live_agent.url, "tth_agent_00000000_not-a-real-secret")
    with pytest.raises(tether.Unauthorized), client.run("Triage"):
        pytest.fail("the block must not run")


def test_the_async_client_governs_the_same_way(live_agent) -> None:
    ran = []

    async def main() -> str:
        async with tether.AsyncClient(live_agent.url, live_agent.key) as client:

            @client.governed_tool("crm-lookup", action="read")
            async def crm_lookup(customer_id: str) -> str:
                ran.append(customer_id)
                return customer_id

            @client.governed_tool("payment-refund", action="create")
            async def payment_refund(order: str, amount: float) -> None:
                ran.append(order)

            async with client.run("Triage claim 4711") as run:
                assert await crm_lookup("c-42") == "c-42"
                with pytest.raises(tether.Denied):
                    await payment_refund(order="o-1", amount=50)
                decision = await run.check_model("gpt-4o-mini", 100, 20)
                await run.report_usage(decision, 80, 10)
            return run.id

    run_id = asyncio.run(main())
    assert ran == ["c-42"]
    assert Run.objects.get(pk=run_id).state == "finished"
    assert list(
        Decision.objects.filter(run_id=run_id).order_by("id").values_list("action", "disposition")
    ) == [("tool.invoke", "allow"), ("tool.invoke", "deny"), ("model.call", "allow")]


def test_a_run_knows_its_versions_behaviour_and_reports_metrics_and_its_outcome(live_agent) -> None:
    from apps.drift.models import RunMetric

    client = tether.Client(live_agent.url, live_agent.key)
    with client.run("Triage claim 4711") as run:
        assert run.behaviour["version"] == run.version
        assert set(run.behaviour) >= {"default_model", "instructions", "knowledge_base_version"}
        assert run.report_metric("claim_amount", 1250)
        assert run.report_metrics({"pages.read": 3, "bad": "x"})  # the number is sent, "x" not
        assert not run.report_metrics({"Bad Name": 1})  # refused by Tether: logged, not raised
        run.outcome = "approved"
    values = dict(RunMetric.objects.filter(run_id=run.id).values_list("name", "value"))
    assert values == {"claim_amount": 1250.0, "pages.read": 3.0}
    assert Run.objects.get(pk=run.id).outcome == "approved"


def test_the_async_run_reports_metrics_too(live_agent) -> None:
    from apps.drift.models import RunMetric

    async def work() -> str:
        client = tether.AsyncClient(live_agent.url, live_agent.key)
        async with client, client.run("Triage claim 4712") as run:
            assert await run.report_metric("claim_amount", 99.5)
            return run.id

    run_id = asyncio.run(work())
    assert RunMetric.objects.get(run_id=run_id).value == 99.5
