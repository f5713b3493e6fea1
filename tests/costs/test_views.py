"""The model prices page: everyone with a role reads it, admins add negotiated prices, and bad
input is a 400 with a message, never a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.costs.models import ModelPrice

from ..clients import console_client

pytestmark = pytest.mark.django_db

URL = reverse("costs:prices")
GOOD = {
    "model": "gpt-4o",
    "provider": "openai",
    "effective_from": "2026-11-01T00:00",
    "input_per_mtok": "2",
    "output_per_mtok": "8",
    "note": "Enterprise agreement",
}


def test_an_admin_adds_a_price_and_finance_reads_it(org):
    saved = console_client(org.admin).post(URL, GOOD, follow=True)
    assert saved.status_code == 200 and "saved" in saved.content.decode()
    price = ModelPrice.objects.get()
    assert (price.model, price.provider, str(price.input_per_mtok)) == (
        "gpt-4o",
        "openai",
        "2.000000",
    )

    page = console_client(org.finance).get(URL).content.decode()
    assert "gpt-4o" in page and "Enterprise agreement" in page
    assert "Add a negotiated price" not in page  # finance reads, admins write


def test_bad_input_is_refused_with_a_message_and_nothing_saved(org):
    admin = console_client(org.admin)
    cases = {
        ("input_per_mtok", "-1"): "greater than or equal to 0",
        ("input_per_mtok", "cheap"): "Enter a number",
        ("model", ""): "This field is required",
        ("effective_from", "yesterday"): "Enter a valid date/time",
        ("model", "m" * 500): "at most 200 characters",
    }
    for (field, value), message in cases.items():
        answer = admin.post(URL, {**GOOD, field: value})
        assert answer.status_code == 400, (field, value)
        assert message in answer.content.decode(), (field, value)
    admin.post(URL, GOOD)
    again = admin.post(URL, GOOD)
    assert (
        again.status_code == 400
        and "already has a price from that moment" in again.content.decode()
    )
    assert ModelPrice.objects.count() == 1


def test_only_admins_write_and_people_without_a_role_see_nothing(org):
    refused = console_client(org.finance).post(URL, GOOD, follow=True)
    assert "Only admins set model prices" in refused.content.decode()
    assert not ModelPrice.objects.exists()
    outsider = console_client(org.outsider).get(URL)
    assert outsider.status_code == 403 and "Negotiated prices" not in outsider.content.decode()
