"""The audit chain page in real Chromium: an auditor verifies the chain, downloads a range that
re-verifies, and sees tampering by a database superuser named by event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from apps.audit.models import AuditEvent
from apps.registry import services

from ..audit.conftest import third_party_verify
from ..factories import PASSWORD
from .helpers import TABLET, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def _register_agents(org: Any) -> None:
    for slug in ("claims-triage", "fraud-watch", "refund-desk"):
        agent = services.agent_create(
            actor=org.owner,
            data={"name": slug.replace("-", " ").title(), "slug": slug, "mission": "m",
                  "department": org.claims},
        )  # fmt: skip
        services.agent_update(actor=org.owner, agent=agent, data={"mission": f"{slug} mission"})


def test_an_auditor_verifies_exports_and_sees_tampering(
    org: Any, new_page: Any, shoot: Any, tmp_path: Path
) -> None:
    _register_agents(org)
    head = AuditEvent.objects.order_by("-seq").first()
    assert head is not None
    page = new_page()
    log_in(page, "audrey", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_role("link", name="Chain status and export").click()
    assert page.title() == "Audit chain · Tether"
    assert page.get_by_role("heading", name="Not verified yet").is_visible()
    assert page.locator("#head-hash").inner_text() == head.hash
    # The full hash wraps inside its column instead of widening the page.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(page, "audit-chain-unverified")

    page.get_by_role("button", name="Verify the chain now").click()
    assert page.get_by_role("status").get_by_text("The chain is intact").is_visible()
    assert page.get_by_role("heading", name="Intact", exact=True).is_visible()
    history = page.get_by_role("region", name="Recent verifications")
    assert history.get_by_role("row").filter(has_text="audrey").count() == 1
    shoot(page, "audit-chain-intact")

    first = AuditEvent.objects.order_by("seq")[2]
    page.get_by_label("From event id").fill(str(first.id))
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download").click()
    path = tmp_path / "export.jsonl"
    download_info.value.save_as(path)
    lines = path.read_bytes().splitlines()
    assert len(lines) == AuditEvent.objects.filter(id__gte=first.id).count()
    assert third_party_verify(lines, first_prev=first.prev_hash) == len(lines)

    page.get_by_label("From event id").fill("9")
    page.get_by_label("To event id").fill("3")
    page.get_by_role("button", name="Download").click()
    assert page.get_by_role("alert").get_by_text("ends before it starts").first.is_visible()
    shoot(page, "audit-chain-export-error", full_page=False)

    victim = AuditEvent.objects.get(action="registry.agent.updated", target_repr="fraud-watch")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
        cursor.execute(
            "UPDATE audit_auditevent SET message = 'nothing happened' WHERE id = %s", [victim.id]
        )
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")
    page.goto("/audit/chain/")
    page.get_by_role("button", name="Verify the chain now").click()
    assert page.get_by_role("heading", name=f"Broken at event {victim.id}").is_visible()
    assert page.locator(".verify-detail").get_by_text("content no longer matches").is_visible()
    shoot(page, "audit-chain-broken")

    tablet = new_page(viewport=TABLET)
    log_in(tablet, "ada", PASSWORD)
    tablet.goto("/audit/chain/")
    assert tablet.get_by_role("heading", name=f"Broken at event {victim.id}").is_visible()
    assert tablet.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(tablet, "audit-chain-broken-tablet")

    phone = new_page(viewport=PHONE)
    log_in(phone, "ada", PASSWORD)
    phone.goto("/audit/chain/")
    hash_box = phone.locator("#head-hash").bounding_box()
    assert hash_box is not None and hash_box["width"] <= PHONE["width"]
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(phone, "audit-chain-phone")
