"""Ingest keys: admins issue and revoke them, the receiver accepts them, spans sent with one are
attributed only by what they say, and the admins' trace ingest page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.common.tokens import token_digest
from apps.runtime import services as runtime
from apps.runtime.services import Unauthenticated
from apps.traces import services
from apps.traces.models import IngestKey, Span, UnregisteredAgent

from ..clients import console_client as client_for
from ..factories import make_agent
from .conftest import export, make_span

pytestmark = pytest.mark.django_db
URL = "/v1/traces"
PROTOBUF = "application/x-protobuf"


def post(client: Any, body: bytes, secret: str) -> Any:
    return client.post(URL, data=body, content_type=PROTOBUF, HTTP_AUTHORIZATION=f"Bearer {secret}")


@pytest.fixture
def ingest(org: Any) -> tuple[IngestKey, str]:
    key, issued = services.ingest_key_issue(
        actor=org.admin, name="prod collector", environment="prod"
    )
    return key, issued.plaintext


# --- services --------------------------------------------------------------------------------


def test_an_admin_issues_an_ingest_key_stored_as_a_digest_and_audited(org: Any) -> None:
    key, issued = services.ingest_key_issue(actor=org.admin, name=" fleet ", environment="")
    assert issued.plaintext.startswith(f"tth_ingest_{key.lookup}_")
    key.refresh_from_db()
    assert (key.name, key.environment, key.created_by_name) == ("fleet", "", "ada")
    assert key.digest == token_digest(issued.plaintext)
    stored = {f.name: str(getattr(key, f.attname)) for f in IngestKey._meta.fields}
    assert not any(issued.plaintext in value for value in stored.values())
    assert issued.plaintext not in repr(issued)
    event = AuditEvent.objects.get(action="traces.ingest_key.issued")
    assert (event.actor_name, event.target_type, event.target_id) == (
        "ada",
        "ingest_key",
        str(key.pk),
    )
    assert issued.plaintext not in str(event.after)


@pytest.mark.parametrize("persona", ["owner", "approver", "finance", "auditor", "outsider"])
def test_only_admins_issue_or_revoke_ingest_keys(org: Any, ingest: Any, persona: str) -> None:
    key, _secret = ingest
    with pytest.raises(NotPermitted):
        services.ingest_key_issue(actor=getattr(org, persona), name="mine", environment="")
    with pytest.raises(NotPermitted):
        services.ingest_key_revoke(actor=getattr(org, persona), key=key)
    key.refresh_from_db()
    assert key.revoked_at is None
    assert IngestKey.objects.count() == 1


def test_issuing_refuses_a_missing_name_or_an_unknown_environment(org: Any) -> None:
    with pytest.raises(ApplicationError) as no_name:
        services.ingest_key_issue(actor=org.admin, name="  ", environment="")
    assert "name" in no_name.value.details
    with pytest.raises(ApplicationError) as bad_env:
        services.ingest_key_issue(actor=org.admin, name="x", environment="moon")
    assert "environment" in bad_env.value.details
    assert IngestKey.objects.count() == 0


def test_revoking_is_audited_once_and_refuses_the_key(org: Any, ingest: Any) -> None:
    key, secret = ingest
    services.ingest_key_revoke(actor=org.admin, key=key)
    services.ingest_key_revoke(actor=org.admin, key=key)  # again: nothing more happens
    assert AuditEvent.objects.filter(action="traces.ingest_key.revoked").count() == 1
    with pytest.raises(Unauthenticated, match="revoked"):
        services.ingest_key_authenticate(secret)


def test_authenticating_refuses_unknown_or_forged_keys(org: Any, ingest: Any) -> None:
    key, secret = ingest
    for token in ("tth_ingest_nonsense", f"tth_ingest_{key.lookup}_forged", secret + "x", ""):
        with pytest.raises(Unauthenticated):
            services.ingest_key_authenticate(token)


def test_last_used_is_written_at_most_once_a_minute(org: Any, ingest: Any) -> None:
    key, secret = ingest
    services.ingest_key_authenticate(secret)
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    services.ingest_key_authenticate(secret)
    key.refresh_from_db()
    assert key.last_used_at == first
    IngestKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    services.ingest_key_authenticate(secret)
    key.refresh_from_db()
    assert key.last_used_at > first - timedelta(seconds=1)


def test_spans_ingest_takes_exactly_one_sender(sender: Any, ingest: Any) -> None:
    with pytest.raises(ValueError):
        services.spans_ingest(request=export(make_span()))
    with pytest.raises(ValueError):
        services.spans_ingest(
            request=export(make_span()), credential=sender.credential, ingest_key=ingest[0]
        )


# --- the receiver ----------------------------------------------------------------------------


def test_an_export_with_an_ingest_key_is_stored_with_the_key_recorded(
    client: Any, sender: Any, ingest: Any
) -> None:
    key, secret = ingest
    response = post(client, export(make_span()).SerializeToString(), secret)
    assert response.status_code == 200
    answer = ExportTraceServiceResponse()
    answer.ParseFromString(response.content)
    assert answer.partial_success.rejected_spans == 0
    stored = Span.objects.get()
    assert stored.agent == sender.agent  # attributed by its service.name alone
    assert (stored.ingest_key, stored.credential) == (key, None)
    assert stored.environment == "prod"  # the key's default, as the resource named none
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_a_revoked_ingest_key_gets_401(client: Any, org: Any, ingest: Any) -> None:
    key, secret = ingest
    services.ingest_key_revoke(actor=org.admin, key=key)
    response = post(client, export(make_span()).SerializeToString(), secret)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Span.objects.count() == 0


def test_with_an_ingest_key_a_span_naming_nobody_registered_is_kept_unattributed(
    client: Any, sender: Any, ingest: Any
) -> None:
    _key, secret = ingest
    spans = export(
        make_span(attributes={"gen_ai.agent.name": "shadow-bot"}),
        make_span(),  # names nothing: no credential's agent to fall back on
        resource={"service.name": "unknown_service:python", "deployment.environment": "stage"},
    )
    assert post(client, spans.SerializeToString(), secret).status_code == 200
    assert list(Span.objects.values_list("agent", "agent_name").order_by("agent_name")) == [
        (None, "shadow-bot"),
        (None, "unknown_service:python"),
    ]
    found = {u.name: (u.environment, u.span_count) for u in UnregisteredAgent.objects.all()}
    assert found == {"shadow-bot": ("staging", 1), "unknown_service:python": ("staging", 1)}


def test_with_an_ingest_key_a_run_is_linked_only_to_the_agent_the_span_names(
    client: Any, org: Any, sender: Any, ingest: Any
) -> None:
    _key, secret = ingest
    other = make_agent(org.claims, org.owner, "other-bot")
    run, _ = runtime.run_start(credential=sender.credential, task="Triage claim 42")
    spans = export(
        make_span(attributes={"tether.run.id": str(run.pk)}),  # service.name: claims-triage
        make_span(attributes={"tether.run.id": str(run.pk), "gen_ai.agent.id": other.slug}),
    )
    assert post(client, spans.SerializeToString(), secret).status_code == 200
    linked = dict(Span.objects.values_list("agent__slug", "run"))
    assert linked == {"claims-triage": run.pk, "other-bot": None}
    assert set(Span.objects.values_list("run_ref", flat=True)) == {str(run.pk)}


# --- the console page ------------------------------------------------------------------------


def test_an_admin_sees_the_ingest_page_issues_a_key_once_and_revokes_it(
    org: Any, ingest: Any
) -> None:
    UnregisteredAgent.objects.create(
        name="shadow-bot",
        environment="prod",
        first_seen_at=timezone.now(),
        last_seen_at=timezone.now(),
        span_count=7,
    )
    client = client_for(org.admin)
    page = client.get(reverse("traces:ingest"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "<title>Trace ingest · Tether</title>" in body
    assert ">Trace ingest</a>" in body  # the nav link
    assert "prod collector" in body and "shadow-bot" in body

    issued = client.post(reverse("traces:ingest"), {"name": "fleet", "environment": ""})
    assert issued.status_code == 201
    assert "no-store" in issued["Cache-Control"]
    key = IngestKey.objects.get(name="fleet")
    plaintext = issued.context["issued"]
    assert (
        plaintext.startswith(f"tth_ingest_{key.lookup}_") and plaintext in issued.content.decode()
    )
    assert plaintext not in client.get(reverse("traces:ingest")).content.decode()

    refused = client.post(reverse("traces:ingest"), {"name": "", "environment": "moon"})
    assert refused.status_code == 400

    revoked = client.post(reverse("traces:ingest-key-revoke", args=[key.pk]), follow=True)
    assert revoked.status_code == 200
    assert "Revoked the ingest key" in revoked.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_the_empty_state_says_what_an_unregistered_agent_is_and_what_to_do(org: Any) -> None:
    body = client_for(org.admin).get(reverse("traces:ingest")).content.decode()
    assert "No unregistered agents." in body
    assert "register the agent" in body and "gen_ai.agent.name" in body


@pytest.mark.parametrize("persona", ["owner", "approver", "finance", "auditor", "outsider"])
def test_anyone_but_an_admin_gets_403_for_the_page_and_404_for_a_key(
    org: Any, ingest: Any, persona: str
) -> None:
    key, _secret = ingest
    client = client_for(getattr(org, persona))
    page = client.get(reverse("traces:ingest"))
    assert page.status_code == 403
    assert "prod collector" not in page.content.decode()
    assert client.post(reverse("traces:ingest"), {"name": "x"}).status_code == 403
    assert client.post(reverse("traces:ingest-key-revoke", args=[key.pk])).status_code == 404
    assert ">Trace ingest</a>" not in client.get(reverse("home")).content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None
    assert IngestKey.objects.count() == 1


def test_signed_out_visitors_are_sent_to_log_in(client: Any, ingest: Any) -> None:
    response = client.get(reverse("traces:ingest"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
