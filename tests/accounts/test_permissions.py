from __future__ import annotations

import pytest

from apps.registry.models import Agent, MemoryStore, Tool

from ..factories import make_agent, make_team, make_tool, make_user

pytestmark = pytest.mark.django_db


def visible(user):
    return set(Agent.objects.for_user(user).values_list("slug", flat=True))


def changeable(user):
    return set(Agent.objects.for_user(user, "change").values_list("slug", flat=True))


@pytest.fixture
def agents(org):
    return {
        "claims": make_agent(org.claims, org.owner, "claims-agent"),
        "payments": make_agent(org.payments, org.other_owner, "payments-agent"),
        "unowned": make_agent(org.payments, None, "orphan-agent"),
    }


def test_admin_sees_and_changes_every_agent(org, agents):
    assert visible(org.admin) == changeable(org.admin) == set(a.slug for a in agents.values())


def test_owner_sees_their_department_and_changes_only_their_own(org, agents):
    assert visible(org.owner) == {"claims-agent"}
    assert changeable(org.owner) == {"claims-agent"}


def test_owner_sees_an_agent_they_own_outside_their_department(org, agents):
    make_agent(org.payments, org.owner, "moonlighting")
    assert "moonlighting" in visible(org.owner)


def test_department_approver_reads_only_that_department_and_changes_nothing(org, agents):
    assert visible(org.approver) == {"claims-agent"}
    assert changeable(org.approver) == set()


def test_organisation_wide_finance_and_auditor_read_everything_and_change_nothing(org, agents):
    for user in (org.finance, org.auditor):
        assert visible(user) == set(a.slug for a in agents.values())
        assert changeable(user) == set()


def test_outsider_sees_nothing_at_all(org, agents):
    make_tool("crm-lookup")
    assert visible(org.outsider) == set()
    assert not Tool.objects.for_user(org.outsider).exists()
    assert not MemoryStore.objects.for_user(org.outsider).exists()


def test_team_scoped_role_reads_that_teams_agents_only(org, agents):
    other_team = make_team(org.claims, "claims-intake")
    in_team = make_agent(org.claims, org.owner, "ops-agent", team=org.claims_ops)
    make_agent(org.claims, org.owner, "intake-agent", team=other_team)
    reader = make_user("tess", ("approver", org.claims_ops))
    assert visible(reader) == {in_team.slug}


def test_tool_catalogue_is_read_by_every_role_and_changed_by_its_owner(org):
    tool = make_tool("send-email", owner=org.other_owner)
    assert Tool.objects.for_user(org.approver).filter(pk=tool.pk).exists()
    assert not Tool.objects.for_user(org.owner, "change").filter(pk=tool.pk).exists()
    assert Tool.objects.for_user(org.other_owner, "change").filter(pk=tool.pk).exists()


def test_the_admin_role_opens_the_django_admin(org, client):
    client.force_login(org.admin)
    assert client.get("/admin/").status_code == 200
    client.force_login(org.owner)
    assert client.get("/admin/").status_code == 302  # to the admin login: owners are not staff


def test_the_admin_role_cannot_be_scoped(org):
    from apps.accounts.services import role_assign
    from apps.common.errors import ApplicationError

    with pytest.raises(ApplicationError):
        role_assign(actor=org.admin, user=org.owner, role="admin", department=org.claims)
