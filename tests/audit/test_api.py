"""``/api/v1/audit/``: the chain's status, verifications and the export, in the API's shapes."""

from __future__ import annotations

import json

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse

from apps.audit.models import AuditVerification
from apps.audit.services import audit_chain_verify

from ..clients import api_client
from ..factories import make_user
from .conftest import as_superuser_bypassing_the_trigger, record, third_party_verify

pytestmark = pytest.mark.django_db

CHAIN = reverse("audit-api:chain")
VERIFICATIONS = reverse("audit-api:verification-list")
EXPORT = reverse("audit-api:export")


def test_the_chain_status_names_the_head_and_links_onwards(org):
    events = record(2)
    response = api_client(org.auditor).get(CHAIN)
    assert response.status_code == 200
    data = response.json()
    assert data["url"] == "http://testserver" + CHAIN
    assert data["head_event_id"] == events[-1].id
    assert data["head_hash"] == events[-1].hash
    assert data["genesis_hash"] == "0" * 64
    assert data["append_only_triggers"] == {
        "audit_auditevent": "enabled",
        "audit_auditverification": "enabled",
    }
    assert data["last_verification"] is None
    assert data["verifications_url"].endswith(VERIFICATIONS)
    assert data["export_url"].endswith(EXPORT)


def test_posting_a_verification_runs_it_and_answers_201_with_the_result(org):
    record(3)
    client = api_client(org.admin)
    response = client.post(VERIFICATIONS, {}, format="json")
    assert response.status_code == 201
    data = response.json()
    assert data["ok"] is True and data["actor"] == "ada"
    assert data["url"].endswith(reverse("audit-api:verification-detail", args=[data["id"]]))
    assert client.get(data["url"]).json()["id"] == data["id"]
    listed = client.get(VERIFICATIONS).json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == data["id"]
    assert client.get(CHAIN).json()["last_verification"]["id"] == data["id"]


def test_a_broken_chain_is_a_recorded_result_not_an_error(org):
    events = record(3)
    as_superuser_bypassing_the_trigger(
        "UPDATE audit_auditevent SET after = '{\"approved\": true}' WHERE id = %s", [events[0].id]
    )
    data = api_client(org.admin).post(VERIFICATIONS, {}, format="json").json()
    assert data["ok"] is False
    assert (data["broken_kind"], data["broken_event_id"]) == ("content", events[0].id)


def test_verification_input_is_strict(org):
    client = api_client(org.admin)
    response = client.post(VERIFICATIONS, {"since_id": "x", "extra": 1}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_the_export_streams_jsonl_that_re_verifies(org):
    events = record(3)
    response = api_client(org.auditor).get(EXPORT, {"from_id": events[0].id})
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    lines = b"".join(response.streaming_content).splitlines()
    assert third_party_verify(lines, first_prev=events[0].prev_hash) == 3


def test_the_export_answers_ocsf_when_asked(org):
    record(1)
    response = api_client(org.auditor).get(EXPORT, {"format": "ocsf"})
    assert response.status_code == 200
    first = json.loads(b"".join(response.streaming_content).splitlines()[0])
    assert first["class_uid"] == 6003


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from_id": "x"}, "from_id: Enter a whole number."),
        ({"since": "2026-13-01"}, "since:"),
        ({"from_id": "3", "to_id": "1"}, "ends before it starts"),
        ({"form_id": "3"}, "Unknown parameter(s): form_id"),
    ],
)
def test_bad_export_parameters_are_a_400_in_the_error_shape(org, params, words):
    response = api_client(org.admin).get(EXPORT, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert words in error["message"]


def test_a_range_over_the_limit_is_a_400_in_the_error_shape(org, monkeypatch):
    monkeypatch.setattr("apps.audit.export.EXPORT_MAX_EVENTS", 2)
    record(3)
    response = api_client(org.admin).get(EXPORT)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "range_too_large"


@pytest.mark.parametrize("persona", ["owner", "finance", "outsider", "scoped"])
def test_anyone_but_admins_and_org_wide_auditors_is_refused(org, persona):
    user = (
        make_user("dora", ("auditor", org.claims)) if persona == "scoped" else getattr(org, persona)
    )
    client = api_client(user)
    record(1)
    _, verification = audit_chain_verify(actor=None)
    for response in (
        client.get(CHAIN),
        client.get(VERIFICATIONS),
        client.post(VERIFICATIONS, {}, format="json"),
        client.get(EXPORT),
    ):
        assert response.status_code == 403
        assert "organisation" in response.json()["error"]["message"]
    detail = reverse("audit-api:verification-detail", args=[verification.pk])
    assert client.get(detail).status_code == 404
    assert AuditVerification.objects.count() == 1
