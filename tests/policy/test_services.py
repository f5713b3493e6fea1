"""Policy services: admins only, validated before saving, versioned and audited."""

from __future__ import annotations

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.policy.models import Policy, PolicyVersion
from apps.policy.services import (
    policy_create,
    policy_disable,
    policy_enable,
    policy_update,
)

pytestmark = pytest.mark.django_db

TEXT = 'forbid(principal, action == Action::"memory.write", resource);'
OTHER = 'forbid(principal, action == Action::"delegate", resource);'


def create(actor: Any, **data: Any) -> Policy:
    return policy_create(
        actor=actor, data={"name": "No writes", "slug": "no-writes", "text": TEXT, **data}
    )


def test_an_admin_writes_a_policy_as_version_1_and_the_trail_records_it(org: Any) -> None:
    policy = create(org.admin, comment="Freeze memory during the audit")
    assert (policy.enabled, policy.created_by, policy.updated_by) == (True, org.admin, org.admin)
    [version] = policy.versions.all()
    assert (version.number, version.text, version.author_name) == (1, TEXT, "ada")
    assert version.comment == "Freeze memory during the audit"
    event = AuditEvent.objects.get(action="policy.created")
    assert (event.actor_name, event.target_repr) == ("ada", "no-writes")
    assert event.after["text"] == TEXT and event.after["version"] == 1


def test_each_change_of_text_writes_a_new_version_and_other_changes_do_not(org: Any) -> None:
    policy = create(org.admin)
    policy_update(actor=org.admin, policy=policy, data={"text": OTHER}, comment="Delegation too")
    policy_update(actor=org.admin, policy=policy, data={"description": "Why: the audit."})
    policy_update(actor=org.admin, policy=policy, data={"text": OTHER})  # unchanged: nothing
    versions = list(policy.versions.order_by("number").values_list("number", "text", "comment"))
    assert versions == [(1, TEXT, "Created"), (2, OTHER, "Delegation too")]
    assert AuditEvent.objects.filter(action="policy.updated").count() == 2
    policy.refresh_from_db()
    assert (policy.text, policy.description) == (OTHER, "Why: the audit.")


def test_invalid_text_is_never_saved_and_the_error_says_where(org: Any) -> None:
    with pytest.raises(ApplicationError) as caught:
        create(org.admin, text="forbid(principal, action, resource) when { context.amont > 5 };")
    assert caught.value.details["text"][0].startswith("Line 1, column 52:")
    assert caught.value.details["problems"][0]["line"] == 1
    assert not Policy.objects.exists()
    policy = create(org.admin)
    with pytest.raises(ApplicationError):
        policy_update(actor=org.admin, policy=policy, data={"text": "permit(;"})
    policy.refresh_from_db()
    assert policy.text == TEXT
    assert PolicyVersion.objects.count() == 1


@pytest.mark.parametrize("persona", ["owner", "approver", "finance", "auditor", "outsider"])
def test_only_admins_write_policies(org: Any, persona: str) -> None:
    with pytest.raises(NotPermitted):
        create(getattr(org, persona))
    policy = create(org.admin)
    for write in (
        lambda: policy_update(actor=getattr(org, persona), policy=policy, data={"text": OTHER}),
        lambda: policy_disable(actor=getattr(org, persona), policy=policy),
        lambda: policy_enable(actor=getattr(org, persona), policy=policy),
    ):
        with pytest.raises(NotPermitted):
            write()
    assert Policy.objects.get().text == TEXT


def test_disabling_and_enabling_are_audited_and_keep_the_text(org: Any) -> None:
    policy = create(org.admin)
    policy = policy_disable(actor=org.admin, policy=policy)
    assert not policy.enabled
    policy = policy_enable(actor=org.admin, policy=policy)
    assert policy.enabled and policy.versions.count() == 1
    messages = list(
        AuditEvent.objects.filter(action="policy.updated")
        .order_by("id")
        .values_list("message", flat=True)
    )
    assert messages == ["Disabled", "Enabled"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"slug": "new"}, "slug"),
        ({"slug": "registry"}, "slug"),
        ({"slug": "Not A Slug"}, "slug"),
        ({"name": ""}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_fields_are_refused_by_name(org: Any, data: dict[str, Any], field: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        create(org.admin, **data)
    assert field in caught.value.details


def test_a_taken_slug_is_refused_and_a_slug_never_changes(org: Any) -> None:
    policy = create(org.admin)
    with pytest.raises(ApplicationError) as caught:
        create(org.admin)
    assert "slug" in caught.value.details
    with pytest.raises(ApplicationError):
        policy_update(actor=org.admin, policy=policy, data={"slug": "renamed"})
