"""Trace ingest in real Chromium: an admin issues an ingest key and sees its secret once, an
exporter sends with it, and the agent nobody registered shows up as a finding."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from apps.traces.models import IngestKey, Span

from ..factories import PASSWORD
from ..traces.conftest import export, make_span
from .helpers import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _export_with(live_server: Any, secret: str) -> int:
    body = export(
        make_span("invoke_agent shadow", {"gen_ai.agent.name": "shadow-bot"}),
        make_span("chat gpt-4o", {"gen_ai.agent.name": "shadow-bot"}),
        resource={"service.name": "fleet", "deployment.environment.name": "production"},
    ).SerializeToString()
    request = urllib.request.Request(
        f"{live_server.url}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {secret}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def test_admin_issues_an_ingest_key_and_sees_an_unregistered_agent(
    org: Any, new_page: Any, live_server: Any, shoot: Any
) -> None:
    page = new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, "ada", PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Trace ingest").click()
    assert page.title() == "Trace ingest · Tether"
    assert page.get_by_text("No unregistered agents.").is_visible()
    assert page.get_by_text("No ingest keys.").is_visible()
    shoot(page, "traces-ingest-empty")

    page.get_by_label("Name", exact=True).fill("prod OTel collector")
    page.get_by_label("Environment (optional)", exact=True).select_option("prod")
    page.get_by_role("button", name="Issue ingest key").click()
    secret_box = page.locator("#new-ingest-key")
    secret = secret_box.inner_text().strip()
    key = IngestKey.objects.get()
    assert secret.startswith(f"tth_ingest_{key.lookup}_")
    assert page.get_by_role("alert").get_by_text("only time it is shown").is_visible()
    shoot(page, "traces-ingest-key-issued")

    assert _export_with(live_server, secret) == 200
    assert Span.objects.filter(ingest_key=key, agent=None).count() == 2

    page.goto("/traces/ingest/")
    assert page.locator("#new-ingest-key").count() == 0  # shown once, never again
    assert secret not in page.content()
    findings = page.get_by_role("region", name="Unregistered agents")
    row = findings.get_by_role("row").filter(has_text="shadow-bot")
    assert row.get_by_role("cell", name="2", exact=True).is_visible()
    assert row.get_by_text("prod", exact=True).is_visible()
    shoot(page, "traces-ingest-unregistered")

    page.get_by_role("button", name="Revoke prod OTel collector").click()
    assert page.get_by_text("Revoked the ingest key").is_visible()
    key.refresh_from_db()
    assert key.revoked_at is not None
    shoot(page, "traces-ingest-revoked", full_page=False)
