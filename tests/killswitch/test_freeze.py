"""Engaging the switch freezes the memory stores its agents could write: no run of any agent
writes them until release, reads go on unless the switch refuses them too, and a sub-agent
of a stopped agent cannot be started."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.killswitch import services as kills
from apps.registry import services as registry
from apps.registry.models import MemoryStore
from apps.runtime import services as runtime
from apps.runtime.decisions import DecisionRequest, decide

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def memory(run, action: str, store: str = "case-notes"):
    return decide(run=run, request=DecisionRequest(action=action, store=store))


@pytest.fixture
def shared_store(gated, org):  # noqa: F811
    """case-notes: the refunds agent writes it, and so does a second agent that stays up."""
    store = MemoryStore.objects.create(name="Case notes", slug="case-notes", store_class="shared")
    registry.memory_binding_set(
        actor=org.owner, agent=gated.agent, store=store, access="read_write"
    )
    other = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Notes keeper",
            "slug": "notes-keeper",
            "mission": "Keeps notes.",
            "department": org.claims,
            "environments": ["prod"],
            "status": "active",
        },
    )
    registry.memory_binding_set(actor=org.owner, agent=other, store=store, access="read_write")
    credential, _ = runtime.credential_issue(
        actor=org.owner, agent=other, environment="prod", name="worker"
    )
    other_run, _ = runtime.run_start(credential=credential, task="Keep notes")
    return other_run


def test_a_kill_freezes_the_stores_its_agents_write_for_every_agent(gated, org, shared_store):  # noqa: F811
    assert memory(shared_store, "memory.write").disposition == "allow"

    kill = kills.kill_engage(actor=org.admin, scope="agent", agent=gated.agent, reason="Bad notes")

    assert kill.frozen_stores == ["case-notes"]
    write = memory(shared_store, "memory.write")
    assert (write.disposition, write.reasons) == ("deny", ["memory_frozen"])
    assert "froze case-notes" in write.reasoning
    assert memory(shared_store, "memory.read").disposition == "allow"  # reads as policy says
    # The stopped agent's own run is refused everything, memory included.
    assert memory(gated.run, "memory.write").reasons == ["run_killed"]
    event = AuditEvent.objects.get(action="killswitch.engaged")
    assert event.after["frozen_stores"] == ["case-notes"] and event.after["memory_reads"] == "allow"

    kills.kill_release(actor=org.admin, kill=kill, reason="Cleaned up")
    assert memory(shared_store, "memory.write").disposition == "allow"


def test_a_switch_may_refuse_reads_of_the_frozen_stores_too(gated, org, shared_store):  # noqa: F811
    kills.kill_engage(
        actor=org.admin, scope="agent", agent=gated.agent, reason="Leak", memory_reads="deny"
    )
    read = memory(shared_store, "memory.read")
    assert (read.disposition, read.reasons) == ("deny", ["memory_frozen"])
    assert "no reads" in read.reasoning


def test_an_unknown_memory_reads_setting_is_refused(gated, org):  # noqa: F811
    from apps.common.errors import ApplicationError

    with pytest.raises(ApplicationError, match="memory reads"):
        kills.kill_engage(
            actor=org.admin, scope="agent", agent=gated.agent, reason="x", memory_reads="maybe"
        )


def test_a_global_kill_freezes_every_store(gated, org, shared_store):  # noqa: F811
    MemoryStore.objects.create(name="Scratch", slug="scratch", store_class="durable")
    kill = kills.kill_engage(actor=org.admin, scope="global", reason="Incident")
    assert kill.frozen_stores == ["case-notes", "scratch"]


def test_a_stopped_agent_is_not_started_as_a_sub_agent(gated, org, shared_store):  # noqa: F811
    """The parent keeps running; the sub-agent it asks for is under the switch."""
    parent = shared_store
    parent.agent.delegates_to = ["refunds-agent"]
    parent.agent.save(update_fields=["delegates_to"])
    kills.kill_engage(actor=org.admin, scope="agent", agent=gated.agent, reason="Stop")
    answer = decide(run=parent, request=DecisionRequest(action="delegate", agent="refunds-agent"))
    assert (answer.disposition, answer.reasons) == ("deny", ["delegation_not_allowed"])
    assert "kill switch" in answer.reasoning
    parent.refresh_from_db()
    assert parent.state == "running"  # the parent itself goes on
