from __future__ import annotations

import pytest

from apps.runtime.decisions import DecisionRequest, decide
from apps.runtime.models import Decision

from .conftest import start_run

pytestmark = pytest.mark.django_db


def tool(name, action, **arguments):
    return DecisionRequest(action="tool.invoke", tool=name, tool_action=action, arguments=arguments)


def test_a_granted_tool_with_valid_arguments_is_allowed_and_recorded(setup):
    run, _ = start_run(setup)
    decision = decide(run=run, request=tool("crm-lookup", "read", customer_id="c-1"))
    assert decision.disposition == "allow", decision.reasoning
    assert Decision.objects.filter(pk=decision.pk, disposition="allow").exists()


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (tool("no-such-tool", "read"), "tool_unknown"),
        (tool("crm-lookup", "delete", customer_id="c-1"), "action_not_granted"),
        (tool("crm-lookup", "read"), "arguments_invalid"),
        (tool("payment-refund", "create", amount=900), "constraint_violated"),
    ],
)
def test_each_stage_denies_with_its_reason(setup, request_, reason):
    run, _ = start_run(setup)
    decision = decide(run=run, request=request_)
    assert (decision.disposition, decision.reasons) == ("deny", [reason])


def test_arguments_failing_the_schema_name_the_field(setup):
    run, _ = start_run(setup)
    decision = decide(run=run, request=tool("crm-lookup", "read", customer_id=7))
    assert "customer_id" in decision.reasoning


def test_a_tool_granted_only_in_another_environment_is_not_granted(setup, org):
    from apps.registry import services as registry

    from ..factories import make_tool

    registry.grant_set(
        actor=org.owner,
        agent=setup.agent,
        tool=make_tool("dev-only"),
        actions=["read"],
        environments=["dev"],
    )
    run, _ = start_run(setup)
    assert decide(run=run, request=tool("dev-only", "read")).reasons == ["tool_not_granted"]


def test_critical_tools_always_ask_a_person(setup, org):
    from apps.registry import services as registry

    from ..factories import make_tool

    registry.grant_set(
        actor=org.owner,
        agent=setup.agent,
        tool=make_tool("wire", risk_class="critical"),
        actions=["update"],
        environments=["prod"],
    )
    run, _ = start_run(setup)
    decision = decide(run=run, request=tool("wire", "update"))
    assert (decision.disposition, decision.reasons) == ("ask", ["approval_required"])


def test_an_l0_agent_may_only_read(setup, org):
    from apps.registry import services as registry

    registry.agent_update(actor=org.owner, agent=setup.agent, data={"autonomy_level": 0})
    run, _ = start_run(setup)
    assert (
        decide(run=run, request=tool("crm-lookup", "read", customer_id="c")).disposition == "allow"
    )
    denied = decide(run=run, request=tool("payment-refund", "create", amount=5))
    assert denied.reasons == ["autonomy_read_only"]


def test_the_same_call_again_and_again_trips_the_circuit_breaker(setup):
    run, _ = start_run(setup)
    answers = [
        decide(run=run, request=tool("crm-lookup", "read", customer_id="loop")).disposition
        for _ in range(6)
    ]
    assert answers == ["allow"] * 4 + ["deny"] * 2
    assert Decision.objects.filter(reasons__icontains="circuit_open").count() == 2
    # different arguments are a different call
    assert (
        decide(run=run, request=tool("crm-lookup", "read", customer_id="x")).disposition == "allow"
    )


def test_a_forbidden_store_is_never_written_and_a_read_binding_never_writes(setup):
    run, _ = start_run(setup)
    write = DecisionRequest(action="memory.write", store="hr-records")
    assert decide(run=run, request=write).reasons == ["memory_forbidden"]
    notes = DecisionRequest(action="memory.write", store="case-notes")
    assert decide(run=run, request=notes).reasons == ["memory_write_not_granted"]
    read = DecisionRequest(action="memory.read", store="case-notes")
    assert decide(run=run, request=read).disposition == "allow"


def test_delegation_to_an_agent_the_registry_does_not_allow_is_denied(setup):
    run, _ = start_run(setup)
    decision = decide(run=run, request=DecisionRequest(action="delegate", agent="someone-else"))
    assert decision.reasons == ["delegation_not_allowed"]


def test_a_grant_revoked_mid_run_is_refused_at_the_next_call(setup, org):
    from apps.registry import services as registry

    run, _ = start_run(setup)
    assert (
        decide(run=run, request=tool("crm-lookup", "read", customer_id="c")).disposition == "allow"
    )
    registry.grant_remove(actor=org.owner, grant=setup.agent.grants.get(tool=setup.lookup))
    denied = decide(run=run, request=tool("crm-lookup", "read", customer_id="c2"))
    assert (denied.disposition, denied.reasons) == ("deny", ["policy_denied"])
