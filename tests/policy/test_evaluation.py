"""policy_evaluate: registry grants compile to permits, default deny, forbid beats permit,
forbidden stores are never written, errors fail closed, and the snapshot is rebuilt only when
the policy generation moves."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import cedarpy
import pytest
from django.utils import timezone

from apps.common import generation
from apps.policy import evaluation
from apps.policy.compiler import (
    BASELINE_TEXT,
    AgentRules,
    GrantRule,
    agent_statement_texts,
    cedar_string,
)
from apps.policy.constants import GENERATION
from apps.policy.evaluation import PolicyRequest, PolicyResult, policy_evaluate
from apps.policy.models import Policy
from apps.policy.schema import schema
from apps.policy.services import policy_create, policy_update
from apps.registry import services as registry_services
from apps.registry.constants import AgentStatus, MemoryAccess
from apps.registry.models import MemoryBinding, ToolGrant

from ..factories import make_agent
from .helpers import memory, tool_call

pytestmark = pytest.mark.django_db

LARGE_REFUNDS = (
    "// Refunds over 1,000 need a person.\n"
    'forbid(principal, action == Action::"tool.invoke", resource == Tool::"refund-issue")\n'
    "  when { context has amount && context.amount > 1000 };"
)


def allowed_by(result: PolicyResult, *ids: str) -> bool:
    return result.allowed and result.policies == list(ids) and not result.errors


def denied_by(result: PolicyResult, *ids: str) -> bool:
    return not result.allowed and result.policies == list(ids) and not result.errors


# --- registry grants -------------------------------------------------------------------------


def test_a_granted_tool_action_in_a_granted_environment_is_permitted_by_its_grant(
    registry: Any,
) -> None:
    result = policy_evaluate(tool_call("claims-triage", "crm-lookup", "read"))
    assert allowed_by(result, "registry.grant.claims-triage.crm-lookup")


@pytest.mark.parametrize(
    ("tool", "action", "environment"),
    [
        ("crm-lookup", "close", "prod"),  # the tool offers it, the grant does not
        ("crm-lookup", "read", "dev"),  # granted in prod only
        ("shell", "run", "prod"),  # not granted at all
        ("no-such-tool", "read", "prod"),
    ],
)
def test_anything_outside_a_grant_is_denied_by_default(
    registry: Any, tool: str, action: str, environment: str
) -> None:
    assert denied_by(policy_evaluate(tool_call("claims-triage", tool, action, environment)))


def test_another_agents_grant_permits_nothing(registry: Any) -> None:
    assert denied_by(policy_evaluate(tool_call("fraud-scout", "crm-lookup", "read")))


def test_an_expired_grant_permits_nothing(registry: Any) -> None:
    ToolGrant.objects.filter(tool=registry.crm).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert denied_by(policy_evaluate(tool_call("claims-triage", "crm-lookup", "read")))


def test_a_grant_stops_permitting_the_moment_it_expires(registry: Any, settings: Any) -> None:
    settings.POLICY_REFRESH_MS = 60_000
    expires = timezone.now() + timedelta(milliseconds=300)
    ToolGrant.objects.filter(tool=registry.crm).update(expires_at=expires)
    assert policy_evaluate(tool_call("claims-triage", "crm-lookup", "read")).allowed
    while timezone.now() < expires:
        pass
    assert denied_by(policy_evaluate(tool_call("claims-triage", "crm-lookup", "read")))


def test_an_unknown_agent_is_denied(registry: Any) -> None:
    result = policy_evaluate(tool_call("nobody", "crm-lookup", "read"))
    assert not result.allowed


# --- forbid beats permit ---------------------------------------------------------------------


def test_an_admin_forbid_on_large_amounts_beats_the_grant(registry: Any, org: Any) -> None:
    policy_create(
        actor=org.admin,
        data={"name": "Large refunds", "slug": "large-refunds", "text": LARGE_REFUNDS},
    )
    ask = lambda **context: policy_evaluate(  # noqa: E731
        tool_call("claims-triage", "refund-issue", "issue", **context)
    )
    assert denied_by(ask(amount=1200), "large-refunds")
    assert allowed_by(ask(amount=1000), "registry.grant.claims-triage.refund-issue")
    assert allowed_by(ask(), "registry.grant.claims-triage.refund-issue")  # no amount: no forbid


def test_a_disabled_policy_takes_no_part(registry: Any, org: Any) -> None:
    policy = policy_create(
        actor=org.admin,
        data={"name": "Large refunds", "slug": "large-refunds", "text": LARGE_REFUNDS},
    )
    policy_update(actor=org.admin, policy=policy, data={"enabled": False})
    assert policy_evaluate(tool_call("claims-triage", "refund-issue", "issue", amount=5000)).allowed


def test_an_admin_permit_widens_nothing_that_a_baseline_forbid_covers(
    registry: Any, org: Any
) -> None:
    registry.scout.status = AgentStatus.SUSPENDED
    registry.scout.save()
    policy_create(
        actor=org.admin,
        data={
            "name": "Scout may look",
            "slug": "scout-looks",
            "text": 'permit(principal == Agent::"fraud-scout", action, resource);',
        },
    )
    result = policy_evaluate(tool_call("fraud-scout", "crm-lookup", "read"))
    assert denied_by(result, "baseline.inactive-agent")


# --- models, memory, delegation --------------------------------------------------------------


def test_model_calls_are_permitted_for_active_agents_only(registry: Any) -> None:
    call = PolicyRequest(
        "claims-triage", "model.call", "Model", "gpt-4.1-mini", {"environment": "dev"}
    )
    assert allowed_by(policy_evaluate(call), "baseline.model-call")
    registry.triage.status = AgentStatus.DRAFT
    registry.triage.save()
    assert denied_by(policy_evaluate(call), "baseline.inactive-agent")


def test_a_read_binding_permits_reads_and_a_read_write_binding_writes(
    registry: Any, org: Any
) -> None:
    binding = "registry.memory.claims-triage.case-notes"
    assert allowed_by(
        policy_evaluate(memory("claims-triage", "memory.read", "case-notes")), binding
    )
    assert allowed_by(
        policy_evaluate(memory("claims-triage", "memory.write", "case-notes")), binding
    )
    registry_services.memory_binding_set(
        actor=org.owner, agent=registry.triage, store=registry.notes, access=MemoryAccess.READ
    )
    assert denied_by(policy_evaluate(memory("claims-triage", "memory.write", "case-notes")))
    assert denied_by(policy_evaluate(memory("fraud-scout", "memory.read", "case-notes")))


def test_a_forbidden_store_is_never_written_even_when_something_permits_it(
    registry: Any, org: Any
) -> None:
    # The registry refuses a read-write binding to a forbidden store; force one in anyway,
    # and add an admin permit for every write: the baseline forbid still wins.
    MemoryBinding.objects.filter(store=registry.archive).update(access=MemoryAccess.READ_WRITE)
    policy_create(
        actor=org.admin,
        data={
            "name": "Write anywhere",
            "slug": "write-anywhere",
            "text": 'permit(principal, action == Action::"memory.write", resource);',
        },
    )
    write = policy_evaluate(memory("claims-triage", "memory.write", "legal-archive"))
    assert denied_by(write, "baseline.forbidden-store-write")
    read = policy_evaluate(memory("claims-triage", "memory.read", "legal-archive"))
    assert allowed_by(read, "registry.memory.claims-triage.legal-archive")


def test_an_agent_may_start_only_the_sub_agents_the_registry_lists(registry: Any, org: Any) -> None:
    registry.triage.delegates_to = ["fraud-scout"]
    registry.triage.save()
    make_agent(org.claims, org.owner, "other-bot")
    start = lambda target: policy_evaluate(  # noqa: E731
        PolicyRequest("claims-triage", "delegate", "Agent", target, {"environment": "prod"})
    )
    assert allowed_by(start("fraud-scout"), "registry.delegate.claims-triage.fraud-scout")
    assert denied_by(start("other-bot"))
    registry.scout.status = AgentStatus.RETIRED
    registry.scout.save()
    assert denied_by(start("fraud-scout"), "baseline.inactive-sub-agent")


def test_context_defaults_come_from_the_registry(registry: Any, org: Any) -> None:
    policy_create(
        actor=org.admin,
        data={
            "name": "No high risk at night",
            "slug": "high-risk-night",
            "text": (
                'forbid(principal, action == Action::"tool.invoke", resource)\n'
                '  when { context.risk_class == "high" && context.hour >= 22 };'
            ),
        },
    )
    late = policy_evaluate(tool_call("claims-triage", "refund-issue", "issue", hour=23))
    assert denied_by(late, "high-risk-night")
    assert policy_evaluate(tool_call("claims-triage", "refund-issue", "issue", hour=9)).allowed


# --- fail closed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            PolicyRequest(
                "claims-triage", "tool.invoke", "Model", "crm-lookup", {"environment": "prod"}
            ),
            "applies to a Tool",
        ),
        (
            PolicyRequest(
                "claims-triage", "tool.delete", "Tool", "crm-lookup", {"environment": "prod"}
            ),
            "unknown action",
        ),
        (
            PolicyRequest(
                "claims-triage", "tool.invoke", "Tool", "crm-lookup", {"tool_action": "read"}
            ),
            "environment is required",
        ),
        (
            tool_call("claims-triage", "crm-lookup", "read", amount="12"),
            "amount must be a whole number",
        ),
        (
            tool_call("claims-triage", "crm-lookup", "read", amount=12.5),
            "amount must be a whole number",
        ),
        (tool_call("claims-triage", "crm-lookup", "read", hour=24), "hour must be"),
        (
            tool_call("claims-triage", "crm-lookup", "read", data_classes="pii"),
            "data_classes must be a list",
        ),
        (
            PolicyRequest("", "tool.invoke", "Tool", "crm-lookup", {"environment": "prod"}),
            "principal",
        ),
    ],
)
def test_a_malformed_request_is_denied_with_the_reason(
    registry: Any, request_: PolicyRequest, message: str
) -> None:
    result = policy_evaluate(request_)
    assert not result.allowed
    assert any(message in error for error in result.errors), result.errors


def test_a_policy_that_errors_while_evaluating_denies_even_when_a_grant_permits(
    registry: Any, org: Any
) -> None:
    policy_create(
        actor=org.admin,
        data={
            "name": "Overflows",
            "slug": "overflows",
            "text": (
                "forbid(principal, action, resource)\n"
                "  when { context has amount && context.amount * 1000000000000 < 0 };"
            ),
        },
    )
    result = policy_evaluate(tool_call("claims-triage", "crm-lookup", "read", amount=10**12))
    assert not result.allowed
    assert result.errors and "overflows" in result.errors[0]
    assert policy_evaluate(tool_call("claims-triage", "crm-lookup", "read", amount=5)).allowed


def test_a_saved_policy_that_no_longer_compiles_denies_everything(registry: Any) -> None:
    Policy.objects.create(
        name="Broken", slug="broken", text="forbid(principal, action, resource) when { 1 + };"
    )
    result = policy_evaluate(tool_call("claims-triage", "crm-lookup", "read"))
    assert not result.allowed
    assert "'broken' no longer compiles" in result.errors[0]


def test_a_database_that_cannot_answer_fails_closed(registry: Any, monkeypatch: Any) -> None:
    def unavailable() -> tuple[Any, ...]:
        raise ConnectionError("the database is down")

    monkeypatch.setattr(evaluation, "registry_fingerprint", unavailable)
    result = policy_evaluate(tool_call("claims-triage", "crm-lookup", "read"))
    assert not result.allowed
    assert "the database is down" in result.errors[0]


# --- the cache -------------------------------------------------------------------------------


def test_the_snapshot_is_not_rebuilt_when_nothing_changed(registry: Any, settings: Any) -> None:
    settings.POLICY_REFRESH_MS = 0  # check the fingerprint on every call
    first = evaluation.current_snapshot()
    builds = evaluation.snapshot_builds()
    for _ in range(5):
        assert policy_evaluate(tool_call("claims-triage", "crm-lookup", "read")).allowed
    assert evaluation.current_snapshot() is first
    assert evaluation.snapshot_builds() == builds


def test_a_bump_rebuilds_the_snapshot_and_nothing_else_does_within_the_interval(
    registry: Any, settings: Any
) -> None:
    settings.POLICY_REFRESH_MS = 60_000
    request = tool_call("claims-triage", "crm-lookup", "close")
    assert not policy_evaluate(request).allowed
    first = evaluation.current_snapshot()
    ToolGrant.objects.filter(tool=registry.crm).update(actions=["read", "update", "close"])
    assert not policy_evaluate(request).allowed  # nobody bumped: still the old snapshot
    assert evaluation.current_snapshot() is first
    generation.bump(GENERATION)
    assert policy_evaluate(request).allowed
    assert evaluation.current_snapshot() is not first


def test_a_write_nobody_bumped_for_is_seen_through_the_fingerprint(
    registry: Any, settings: Any
) -> None:
    settings.POLICY_REFRESH_MS = 0
    request = tool_call("fraud-scout", "crm-lookup", "read")
    assert not policy_evaluate(request).allowed
    ToolGrant.objects.create(
        agent=registry.scout, tool=registry.crm, actions=["read"], environments=["prod"]
    )
    assert policy_evaluate(request).allowed


def test_policy_services_bump_the_generation_once_the_transaction_commits(
    registry: Any, org: Any, django_capture_on_commit_callbacks: Any
) -> None:
    before = generation.local(GENERATION)
    with django_capture_on_commit_callbacks() as callbacks:
        policy_create(
            actor=org.admin, data={"name": "Large", "slug": "large", "text": LARGE_REFUNDS}
        )
        assert generation.local(GENERATION) == before  # not before the commit
    assert len(callbacks) == 1
    callbacks[0]()
    assert generation.local(GENERATION) == before + 1


def test_the_generation_is_shared_through_redis(settings: Any) -> None:
    assert settings.REDIS_URL, "tests run against Redis"
    before = generation.read(GENERATION)
    assert before is not None
    generation.bump(GENERATION)
    assert generation.read(GENERATION) == before + 1


def test_without_redis_the_generation_is_local_and_nothing_breaks(settings: Any) -> None:
    settings.REDIS_URL = ""
    before = generation.local(GENERATION)
    generation.bump(GENERATION)
    assert generation.read(GENERATION) is None
    assert generation.local(GENERATION) == before + 1


# --- what the compiler writes ----------------------------------------------------------------


def test_compiled_registry_and_baseline_statements_validate_against_the_schema() -> None:
    rules = AgentRules(
        grants=(GrantRule("crm-lookup", ("read", "update"), ("prod",)),),
        memory=(("notes", MemoryAccess.READ_WRITE), ("kb", MemoryAccess.READ)),
        delegates_to=("fraud-scout",),
    )
    texts = [*agent_statement_texts("claims-triage", rules).values(), *BASELINE_TEXT.values()]
    result = cedarpy.validate_policies("\n".join(texts), schema())
    assert result.validation_passed, result.errors


def test_cedar_strings_survive_quotes_backslashes_and_control_characters() -> None:
    tricky = 'a "quoted" \\ back\nslash\t\x01'
    text = f"permit(principal == Agent::{cedar_string(tricky)}, action, resource);"
    policies = cedarpy.PolicySet.from_str(text)
    answer = cedarpy.is_authorized(
        {
            "principal": {"type": "Agent", "id": tricky},
            "action": {"type": "Action", "id": "model.call"},
            "resource": {"type": "Model", "id": "m"},
            "context": {},
        },
        policies,
        [],
    )
    assert answer.allowed


def test_with_redis_down_decisions_still_follow_the_registry(registry: Any, settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    generation.bump(GENERATION)
    assert generation.read(GENERATION) is None
    assert policy_evaluate(tool_call("claims-triage", "crm-lookup", "read")).allowed
    ToolGrant.objects.filter(tool=registry.crm).delete()
    assert denied_by(policy_evaluate(tool_call("claims-triage", "crm-lookup", "read")))
