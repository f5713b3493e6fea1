"""Legal holds: placed and released by admins only, through audited services; the holds page."""

from __future__ import annotations

import os

import pytest

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.runtime import services as runtime
from apps.traces import holds, services
from apps.traces.models import LegalHold

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(sender):
    run, _ = runtime.run_start(credential=sender.credential, task="Refund claim 12")
    return run


def test_an_admin_places_a_hold_on_a_run_and_the_audit_log_says_who_and_why(org, run):
    hold = services.legal_hold_place(actor=org.admin, run=run, reason="Incident 7: double refund")
    assert hold.is_active and hold.placed_by == org.admin and hold.placed_by_name == "ada"
    event = AuditEvent.objects.get(action="traces.legal_hold.placed")
    assert (event.actor_name, event.target_type, event.target_id) == (
        "ada",
        "legal_hold",
        str(hold.pk),
    )
    assert event.after["run"] == str(run.pk)
    assert event.after["reason"] == "Incident 7: double refund"


def test_a_hold_may_name_a_trace_and_its_id_is_checked(org):
    trace_id = os.urandom(16).hex()
    hold = services.legal_hold_place(actor=org.admin, trace_id=trace_id.upper(), reason="Case 9")
    assert hold.trace_id == trace_id and hold.run is None
    for bad in ("nothex" * 4, "0" * 32, "abc"):
        with pytest.raises(ApplicationError, match="32 hexadecimal"):
            services.legal_hold_place(actor=org.admin, trace_id=bad, reason="Case 9")


def test_a_hold_needs_a_reason_and_something_to_hold(org, run):
    with pytest.raises(ApplicationError, match="Say why"):
        services.legal_hold_place(actor=org.admin, run=run, reason="  ")
    with pytest.raises(ApplicationError, match="Name the run or the trace"):
        services.legal_hold_place(actor=org.admin, reason="Case 9")
    assert not LegalHold.objects.exists()


@pytest.mark.parametrize("who", ["owner", "approver", "auditor", "outsider"])
def test_only_admins_place_or_release_holds(org, run, who):
    with pytest.raises(NotPermitted):
        services.legal_hold_place(actor=getattr(org, who), run=run, reason="Incident 7")
    hold = services.legal_hold_place(actor=org.admin, run=run, reason="Incident 7")
    with pytest.raises(NotPermitted):
        services.legal_hold_release(actor=getattr(org, who), hold=hold)
    hold.refresh_from_db()
    assert hold.is_active
    assert not AuditEvent.objects.filter(action="traces.legal_hold.released").exists()


def test_releasing_is_audited_once(org, run):
    hold = services.legal_hold_place(actor=org.admin, run=run, reason="Incident 7")
    released = services.legal_hold_release(actor=org.admin, hold=hold, reason="Closed")
    assert not released.is_active and released.released_by_name == "ada"
    assert released.release_reason == "Closed"
    again = services.legal_hold_release(actor=org.admin, hold=hold, reason="Twice")
    assert again.released_at == released.released_at and again.release_reason == "Closed"
    events = AuditEvent.objects.filter(action="traces.legal_hold.released")
    assert events.count() == 1
    assert events.get().before["released_at"] is None


# --- the page ------------------------------------------------------------------------------------


def test_the_holds_page_is_for_admins_only(client, org, run):
    services.legal_hold_place(actor=org.admin, run=run, reason="Incident 7")
    client.force_login(org.admin)
    page = client.get("/traces/holds/")
    assert page.status_code == 200
    assert b"Incident 7" in page.content and b"<title>" in page.content
    for who in ("owner", "auditor"):
        client.force_login(getattr(org, who))
        assert client.get("/traces/holds/").status_code == 403
        assert b"Incident 7" not in client.get("/traces/holds/").content
    assert list(holds.legal_hold_list(user=org.owner)) == []


def test_an_admin_places_a_hold_from_a_run_page_and_comes_back(client, org, run):
    client.force_login(org.admin)
    back = f"/runs/{run.pk}/"
    response = client.post(
        "/traces/holds/place/", {"run": str(run.pk), "reason": "Incident 8", "next": back}
    )
    assert response.status_code == 302 and response["Location"] == back
    assert LegalHold.objects.get().run == run


def test_a_hold_for_an_unknown_run_is_refused_with_a_message(client, org):
    client.force_login(org.admin)
    response = client.post(
        "/traces/holds/place/",
        {"run": "00000000-0000-0000-0000-000000000001", "reason": "Incident 8"},
    )
    assert response.status_code == 400
    assert b"No run has this id" in response.content
    assert not LegalHold.objects.exists()


def test_an_offsite_next_is_ignored(client, org, run):
    client.force_login(org.admin)
    response = client.post(
        "/traces/holds/place/",
        {"run": str(run.pk), "reason": "Incident 8", "next": "https://evil.example/"},
    )
    assert response["Location"] == "/traces/holds/"


def test_a_hold_is_released_from_the_page_and_others_get_404(client, org, run):
    hold = services.legal_hold_place(actor=org.admin, run=run, reason="Incident 7")
    client.force_login(org.owner)
    assert client.post(f"/traces/holds/{hold.pk}/release/").status_code == 404
    client.force_login(org.admin)
    response = client.post(f"/traces/holds/{hold.pk}/release/", {"reason": "Closed"})
    assert response.status_code == 302
    hold.refresh_from_db()
    assert not hold.is_active
