"""Version lifecycle: promotion only along dev → staging → canary → prod, a canary's share of
prod's runs, and the one-click rollback in force for the next run."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.registry import services as registry
from apps.registry.models import Deployment
from apps.registry.selectors import serving_version
from apps.releases.services import version_promote, version_rollback
from apps.runtime import services as runtime

from ..clients import api_client, console_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(org):
    agent = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims approver", "slug": "claims-approver", "mission": "Approve claims.",
            "department": org.claims, "environments": ["dev", "staging", "canary", "prod"],
            "status": "active", "knowledge_base_version": "kb-1",
        },
    )  # fmt: skip
    return agent


def _new_version(org, agent, kb: str):
    registry.agent_update(actor=org.owner, agent=agent, data={"knowledge_base_version": kb})
    return agent.versions.order_by("-number").first()


def _promote_all(org, agent, version, *, canary: int = 10):
    for environment in ("dev", "staging", "canary", "prod"):
        version_promote(
            actor=org.owner, agent=agent, version=version, environment=environment,
            traffic_percent=canary if environment == "canary" else None,
        )  # fmt: skip


def test_a_version_goes_to_prod_only_through_every_stage_before_it(org, agent):
    v1 = agent.versions.get()
    with pytest.raises(ApplicationError, match="does not serve in canary"):
        version_promote(actor=org.owner, agent=agent, version=v1, environment="prod")
    _promote_all(org, agent, v1)
    v2 = _new_version(org, agent, "kb-2")
    version_promote(actor=org.owner, agent=agent, version=v2, environment="dev")
    with pytest.raises(ApplicationError, match="promote it there first"):
        version_promote(actor=org.owner, agent=agent, version=v2, environment="canary")
    assert serving_version(agent, "prod", draw=0.99) == v1
    promoted = AuditEvent.objects.filter(action="releases.version.promoted").order_by("id")
    messages = list(promoted.values_list("message", flat=True))
    assert messages[-1] == "v2 promoted to dev (was v1)"
    assert "v1 promoted to canary for 10% of prod's runs" in messages


def test_a_canary_takes_its_share_of_prods_runs(org, agent):
    v1 = agent.versions.get()
    _promote_all(org, agent, v1)
    v2 = _new_version(org, agent, "kb-2")
    for environment in ("dev", "staging"):
        version_promote(actor=org.owner, agent=agent, version=v2, environment=environment)
    version_promote(
        actor=org.owner, agent=agent, version=v2, environment="canary", traffic_percent=25
    )
    assert serving_version(agent, "prod", draw=0.10) == v2
    assert serving_version(agent, "prod", draw=0.30) == v1
    assert serving_version(agent, "canary") == v2
    with pytest.raises(ApplicationError, match="1-100"):
        version_promote(
            actor=org.owner, agent=agent, version=v2, environment="canary", traffic_percent=0
        )


def test_rollback_serves_the_previous_version_to_the_next_run(org, agent):
    v1 = agent.versions.get()
    _promote_all(org, agent, v1, canary=1)
    v2 = _new_version(org, agent, "kb-2")
    _promote_all(org, agent, v2, canary=1)
    credential, _ = runtime.credential_issue(
        actor=org.owner, agent=agent, environment="staging", name="w"
    )
    assert runtime.run_start(credential=credential, task="t")[0].version == v2
    version_rollback(actor=org.owner, agent=agent, environment="staging", note="bad answers")
    run, _ = runtime.run_start(credential=credential, task="t")
    assert run.version == v1
    event = AuditEvent.objects.get(action="releases.version.rolled_back")
    assert event.message == "staging rolled back from v2 to v1: bad answers"
    with pytest.raises(ApplicationError, match="first version"):
        version_rollback(actor=org.owner, agent=agent, environment="staging")


def test_an_environment_that_follows_the_latest_version_rolls_back_to_the_one_before(org, agent):
    v1 = agent.versions.get()
    _new_version(org, agent, "kb-2")
    deployment = version_rollback(actor=org.owner, agent=agent, environment="prod")
    assert deployment.version == v1
    assert Deployment.objects.get(agent=agent, environment="prod").version == v1


def test_only_the_owner_or_an_admin_releases(org, agent):
    v1 = agent.versions.get()
    with pytest.raises(NotPermitted):
        version_promote(actor=org.approver, agent=agent, version=v1, environment="dev")
    with pytest.raises(NotPermitted):
        version_rollback(actor=org.other_owner, agent=agent, environment="prod")
    version_promote(actor=org.admin, agent=agent, version=v1, environment="dev")


def test_the_api_and_the_console_promote_and_roll_back(org, agent):
    client = api_client(org.owner)
    stages = client.get("/api/v1/agents/claims-approver/releases/").json()["stages"]
    assert [s["environment"] for s in stages] == ["dev", "staging", "canary", "prod"]
    assert all(s["version"] == 1 and not s["pinned"] for s in stages)
    refused = client.post(
        "/api/v1/agents/claims-approver/releases/promote",
        {"version": 1, "environment": "prod"},
        format="json",
    )
    assert refused.status_code == 400 and "canary" in refused.json()["error"]["message"]
    bad = client.post(
        "/api/v1/agents/claims-approver/releases/promote",
        {"version": "x", "environment": "moon"},
        format="json",
    )
    assert bad.status_code == 400
    ok = client.post(
        "/api/v1/agents/claims-approver/releases/promote",
        {"version": 1, "environment": "dev"},
        format="json",
    )
    assert ok.status_code == 200 and ok.json()["stages"][0]["pinned"]
    assert api_client(org.outsider).get("/api/v1/agents/claims-approver/releases/").status_code in (
        403,
        404,
    )
    _new_version(org, agent, "kb-2")
    page = console_client(org.owner).get("/agents/claims-approver/releases/")
    assert page.status_code == 200 and "Roll back prod" in page.content.decode()
    done = console_client(org.owner).post(
        "/agents/claims-approver/releases/rollback", {"environment": "prod"}
    )
    assert done.status_code == 302
    assert Deployment.objects.get(agent=agent, environment="prod").version.number == 1
    evil = console_client(org.owner).post(
        "/agents/claims-approver/releases/rollback",
        {"environment": "prod", "next": "https://evil.example/"},
    )
    assert evil.status_code == 302 and evil["Location"] == "/agents/claims-approver/releases/"


def test_comparing_versions_refuses_unknown_ones(org, agent):
    client = console_client(org.owner)
    assert (
        client.get(
            "/agents/claims-approver/versions/compare/?left=1&right=9&environment=prod"
        ).status_code
        == 400
    )
    assert client.get("/agents/claims-approver/versions/compare/?left=a").status_code == 400
    page = client.get(
        "/agents/claims-approver/versions/compare/?left=1&right=1&environment=prod&days=30"
    )
    assert page.status_code == 200 and "Neither version has runs" in page.content.decode()
