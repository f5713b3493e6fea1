"""The chain page: status, verification from the page, and who may see it."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.accounts.models import User
from apps.audit.models import AuditEvent, AuditVerification

from ..clients import console_client as client_for
from ..factories import PASSWORD, make_user
from .conftest import as_superuser_bypassing_the_trigger, record

pytestmark = pytest.mark.django_db

CHAIN = reverse("audit:chain")
VERIFY = reverse("audit:chain-verify")


@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_admins_and_auditors_see_the_chain_status(org, persona):
    events = record(3)
    response = client_for(getattr(org, persona)).get(CHAIN)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<title>Audit chain · Tether</title>" in body
    assert "Not verified yet" in body
    assert events[-1].hash in body
    assert response.context["chain"].head_id == events[-1].id
    assert "enabled on both audit tables" in body


def test_the_audit_log_links_to_the_chain_page(org):
    body = client_for(org.auditor).get(reverse("audit:log")).content.decode()
    assert f'href="{CHAIN}"' in body


def test_verifying_from_the_page_records_who_did_it_and_shows_the_result(org):
    record(2)
    client = client_for(org.auditor)
    response = client.post(VERIFY, follow=True)
    body = response.content.decode()
    verification = AuditVerification.objects.get()
    assert verification.ok and verification.actor_name == "audrey"
    assert verification.actor_type == "user"
    assert "The chain is intact" in body
    assert "Intact" in body and "by audrey" in body


def test_verifying_only_the_new_events_starts_at_the_last_intact_head(org):
    record(2)
    client = client_for(org.admin)
    client.post(VERIFY)
    first = AuditVerification.objects.get()
    record(3)
    client.post(VERIFY, {"scope": "new"})
    second = AuditVerification.objects.order_by("-id").first()
    assert second.since_id == first.head_event_id
    assert second.ok and second.events_checked == 4


def test_a_broken_chain_is_shown_with_the_event_that_broke_it(org):
    events = record(4)
    as_superuser_bypassing_the_trigger(
        "UPDATE audit_auditevent SET actor_name = 'someone else' WHERE id = %s", [events[1].id]
    )
    response = client_for(org.admin).post(VERIFY, follow=True)
    body = response.content.decode()
    assert f"Broken at event {events[1].id}" in body
    assert "content no longer matches its hash" in body
    assert "card--attention" in body


def test_an_empty_log_says_what_happens_next():
    # A superuser made directly is an admin without any audited change.
    admin = User.objects.create_superuser("root", password=PASSWORD)
    assert not AuditEvent.objects.exists()
    body = client_for(admin).get(CHAIN).content.decode()
    assert "The audit log is empty" in body
    assert "(genesis)" in body
    assert "No verification yet." in body


@pytest.mark.parametrize("persona", ["owner", "approver", "finance"])
def test_other_roles_may_not_see_or_verify_the_chain(org, persona):
    client = client_for(getattr(org, persona))
    assert client.get(CHAIN).status_code == 403
    assert client.post(VERIFY).status_code == 403
    assert not AuditVerification.objects.exists()


def test_a_department_scoped_auditor_may_not_see_the_chain(org):
    scoped = make_user("dora", ("auditor", org.claims))
    response = client_for(scoped).get(CHAIN)
    assert response.status_code == 403
    assert "organisation-wide" in response.content.decode()


def test_an_outsider_gets_the_no_role_page(org):
    response = client_for(org.outsider).get(CHAIN)
    assert response.status_code == 403
    assert "You have no role in Tether yet" in response.content.decode()


def test_verify_is_post_only(org):
    assert client_for(org.admin).get(VERIFY).status_code == 405
