"""After a kill: the owners and the departments' channels are told, each stopped agent's
safe-state webhook is called and its outcome recorded and audited. Queued tasks are read back
from the real broker (Redis); the tasks are then called synchronously, webhooks go to a real
HTTP server on 127.0.0.1 and email to Django's locmem outbox. Also: the registry's safe-state
webhook fields through the form, the API and manifests, the secret never shown back."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
from django.urls import reverse

from apps.approvals import channel_services
from apps.approvals.models import NotificationChannel
from apps.approvals.notify import RetryableDeliveryError
from apps.audit.models import AuditEvent
from apps.killswitch import selectors, tasks
from apps.killswitch import services as kills
from apps.killswitch.models import KillNotice, KillSwitch, SafeStateAction
from apps.killswitch.notify import after_kill_plan
from apps.registry import services as registry
from apps.registry.manifests import ManifestError, manifest_apply, manifest_export
from apps.registry.models import Agent

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..approvals.receiver import Receiver, serve_receiver
from ..approvals.test_notify import queued, verify
from ..clients import api_client, console_client
from ..factories import make_agent, make_user

pytestmark = pytest.mark.django_db

PUBLIC = "https://tether.example.com"
SECRET = "safe-state-secret-0123456789"


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.TETHER_PUBLIC_URL = PUBLIC


@pytest.fixture
def receiver() -> Any:
    with serve_receiver() as state:
        yield state


@pytest.fixture
def owners(org: Any) -> Any:
    """The owners with an email address (bob owns agents in payments)."""
    for user in (org.owner, org.other_owner):
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])
    return org


@pytest.fixture
def engage(django_capture_on_commit_callbacks: Any) -> Any:
    """Engage the switch and run its after-commit steps, as the commit would."""

    def press(**arguments: Any) -> KillSwitch:
        arguments.setdefault("reason", "Refunds issued twice: stop it now.")
        with django_capture_on_commit_callbacks(execute=True):
            kill = kills.kill_engage(**arguments)
        return kill

    return press


def with_webhook(org: Any, agent: Agent, url: str, secret: str = SECRET) -> Agent:
    return registry.agent_update(
        actor=org.admin,
        agent=agent,
        data={"shutdown_webhook": url, "shutdown_webhook_secret": secret},
    )


def add_channel(org: Any, kind: str, target: str, **extra: Any) -> NotificationChannel:
    return channel_services.channel_create(
        actor=org.admin, name=extra.pop("name", f"{kind} {target[-12:]}"), kind=kind,
        target=target, **extra,
    )  # fmt: skip


def incident(kill: KillSwitch) -> str:
    return f"{PUBLIC}/kill/{kill.pk}/"


# --- what engaging plans and queues --------------------------------------------------------------


def test_engaging_plans_the_owners_email_each_channel_in_scope_and_the_safe_state_call_and_queues_them(
    owners: Any,
    gated: Any,  # noqa: F811
    receiver: Receiver,
    engage: Any,
) -> None:
    with_webhook(owners, gated.agent, receiver.url("/safe"))
    everyone = add_channel(owners, "email", "risk@example.com", name="Risk")
    claims = add_channel(owners, "webhook", receiver.url("/claims"), department=owners.claims)
    add_channel(owners, "slack", receiver.url("/payments"), department=owners.payments)
    off = add_channel(owners, "slack", receiver.url("/off"))
    channel_services.channel_set_enabled(actor=owners.admin, channel=off, enabled=False)

    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)

    notices = {(n.kind, n.target, n.channel_id) for n in KillNotice.objects.filter(kill=kill)}
    assert notices == {
        ("email", "alice@example.com", None),
        ("email", "risk@example.com", everyone.pk),
        ("webhook", claims.target, claims.pk),
    }
    [action] = SafeStateAction.objects.filter(kill=kill)
    assert (action.agent, action.url, action.status) == (
        gated.agent,
        receiver.url("/safe"),
        "pending",
    )
    # Queued by id in the broker, once the rows were committed; nothing sent yet.
    assert queued("killswitch.safe_state") == [(action.pk,)]
    assert sorted(queued("killswitch.notify")) == sorted(
        (pk,) for pk in KillNotice.objects.filter(kill=kill).values_list("pk", flat=True)
    )
    assert receiver.requests == []


def test_a_team_kill_tells_the_owners_of_its_agents_though_none_was_running(
    owners: Any, engage: Any
) -> None:
    dana = make_user("dana", ("owner", owners.claims), email="dana@example.com")
    make_agent(owners.claims, dana, "intake-bot", team=owners.claims_ops)
    make_agent(owners.claims, owners.owner, "sorter", team=owners.claims_ops)
    make_agent(owners.claims, owners.owner, "old-bot", team=owners.claims_ops, status="retired")
    make_agent(owners.claims, owners.other_owner, "elsewhere")  # not in the team

    kill = engage(actor=owners.admin, scope="team", team=owners.claims_ops)

    assert kill.runs_killed == 0
    assert sorted(KillNotice.objects.filter(kill=kill).values_list("target", flat=True)) == [
        "alice@example.com",
        "dana@example.com",
    ]


def test_owners_without_an_email_address_are_not_planned_and_each_address_is_told_once(
    owners: Any, engage: Any
) -> None:
    make_agent(owners.payments, owners.other_owner, "refunds")
    make_agent(owners.payments, owners.other_owner, "payouts")
    make_agent(owners.payments, owners.outsider, "no-email")  # oscar has no address

    kill = engage(actor=owners.admin, scope="department", department=owners.payments)

    assert list(KillNotice.objects.filter(kill=kill).values_list("target", flat=True)) == [
        "bob@example.com"
    ]


# --- the messages --------------------------------------------------------------------------------


def test_the_owner_is_emailed_what_was_stopped_who_pressed_it_why_and_the_incident_link(
    owners: Any,
    gated: Any,  # noqa: F811
    engage: Any,
    mailoutbox: list[Any],
) -> None:
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)
    [notice] = KillNotice.objects.filter(kill=kill)

    assert tasks.notify(notice.pk) is True

    [message] = mailoutbox
    assert message.to == ["alice@example.com"]
    assert (
        message.subject
        == "[Tether] Kill switch engaged: agent refunds-agent stopped (1 run killed)"
    )
    for fact in (
        "Stopped: An agent (all its runs): agent refunds-agent",
        "Runs killed: 1",
        "Agents stopped: refunds-agent",
        "Your agents: refunds-agent",
        "Engaged by: alice",
        "Reason: Refunds issued twice: stop it now.",
        f"Open the incident: {incident(kill)}",
    ):
        assert fact in message.body, fact
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html" and f'href="{incident(kill)}"' in html
    assert incident(kill) == PUBLIC + reverse("killswitch:detail", args=[kill.pk])
    notice.refresh_from_db()
    assert (notice.status, notice.attempts, notice.last_error) == ("sent", 1, "")
    assert notice.sent_at is not None


def test_an_automatic_kill_says_so_and_what_tripped_it(
    owners: Any,
    gated: Any,  # noqa: F811
    engage: Any,
    mailoutbox: list[Any],
) -> None:
    kill = engage(actor=None, scope="run", run=gated.run, trigger="circuit_breaker",
                  reason="The same refund was tried 40 times.")  # fmt: skip
    [notice] = KillNotice.objects.filter(kill=kill)

    tasks.notify(notice.pk)

    body = mailoutbox[0].body
    assert "Engaged by: automatic: circuit_breaker" in body
    assert f"run {str(gated.run.pk)[:8]} of refunds-agent" in body
    assert "The same refund was tried 40 times." in body


def test_a_channels_signed_webhook_and_slack_message_carry_the_kill_and_the_link(
    owners: Any,
    gated: Any,  # noqa: F811
    receiver: Receiver,
    engage: Any,
) -> None:
    hook = add_channel(owners, "webhook", receiver.url("/hook"), secret="channel-secret-0123456")
    add_channel(owners, "slack", receiver.url("/slack"))
    kill = engage(actor=owners.admin, scope="department", department=owners.claims)

    for notice in KillNotice.objects.filter(kill=kill).exclude(kind="email"):
        assert tasks.notify(notice.pk) is True

    by_path = {request.path: request for request in receiver.requests}
    signed = by_path["/hook"]
    assert verify(hook.secret, signed.headers, signed.body)
    assert not verify("another-secret-entirely", signed.headers, signed.body)
    assert signed.headers["X-Tether-Event"] == "kill_switch.engaged"
    body = signed.json
    assert (body["type"], body["id"], body["url"]) == (
        "tether.kill_switch.engaged", f"kill:{kill.pk}", incident(kill),
    )  # fmt: skip
    assert body["kill_switch"]["scope"] == "department"
    assert body["kill_switch"]["target"] == "claims"
    assert body["kill_switch"]["runs_killed"] == 1
    assert body["kill_switch"]["agents"] == ["refunds-agent"]
    assert body["kill_switch"]["engaged_by"] == "ada"
    slack = by_path["/slack"].json
    assert incident(kill) in slack["text"]
    [button] = slack["blocks"][1]["elements"]
    assert button["text"]["text"] == "Open the incident" and button["url"] == incident(kill)


# --- the safe-state webhook ----------------------------------------------------------------------


def test_the_safe_state_webhook_gets_a_signed_body_and_its_answer_is_recorded_and_audited(
    owners: Any,
    gated: Any,  # noqa: F811
    receiver: Receiver,
    engage: Any,
) -> None:
    with_webhook(owners, gated.agent, receiver.url("/safe"))
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)
    [action] = SafeStateAction.objects.filter(kill=kill)

    assert tasks.safe_state(action.pk) is True

    [request] = receiver.requests
    assert verify(SECRET, request.headers, request.body)
    assert not verify(SECRET, request.headers, request.body + b" ")
    assert request.headers["X-Tether-Delivery"] == f"safe-state-{action.pk}"
    body = request.json
    assert body == {
        "event": "tether.kill_switch.engaged",
        "kill_switch": kill.pk,
        "url": incident(kill),
        "agent": "refunds-agent",
        "runs": [str(gated.run.pk)],
        "scope": "agent",
        "target": "refunds-agent",
        "reason": "Refunds issued twice: stop it now.",
        "engaged_by": "alice",
        "automatic": False,
        "trigger": None,
        "engaged_at": kill.engaged_at.isoformat().replace("+00:00", "Z"),
    }
    action.refresh_from_db()
    assert (action.status, action.attempts, action.http_status) == ("succeeded", 1, 200)
    assert (action.response_excerpt, action.last_error) == ("ok", "")
    assert action.finished_at is not None
    event = AuditEvent.objects.get(action="killswitch.safe_state.succeeded")
    assert (event.target_type, event.target_id) == ("kill_switch", str(kill.pk))
    assert event.after["agent"] == "refunds-agent" and event.after["http_status"] == 200
    assert SECRET not in json.dumps(event.after)
    assert selectors.kill_safe_states(kill=kill) == [action]


def test_a_failing_safe_state_receiver_is_retried_then_given_up_with_its_error_kept(
    owners: Any,
    gated: Any,  # noqa: F811
    receiver: Receiver,
    engage: Any,
) -> None:
    with_webhook(owners, gated.agent, receiver.url("/safe"))
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)
    [action] = SafeStateAction.objects.filter(kill=kill)
    receiver.status = 503

    with pytest.raises(RetryableDeliveryError):  # called directly, Celery re-raises it: a retry
        tasks.safe_state(action.pk)

    action.refresh_from_db()
    assert (action.status, action.attempts, action.http_status) == ("failed", 1, 503)
    assert "HTTP 503 from 127.0.0.1" in action.last_error
    assert action.response_excerpt == "receiver is down"
    assert action.finished_at is None

    tasks.safe_state.push_request(retries=tasks.safe_state.max_retries)  # the worker's last retry
    try:
        assert tasks.safe_state.run(action.pk) is False
    finally:
        tasks.safe_state.pop_request()

    action.refresh_from_db()
    assert (action.status, action.attempts, action.http_status) == ("gave_up", 2, 503)
    assert "HTTP 503" in action.last_error and action.finished_at is not None
    assert tasks.safe_state(action.pk) is False  # given up: never called again
    assert len(receiver.requests) == 2
    assert receiver.requests[0].json == receiver.requests[1].json  # the same call each time
    trail = AuditEvent.objects.filter(target_type="kill_switch", target_id=str(kill.pk))
    assert list(trail.filter(action__startswith="killswitch.safe_state").order_by("seq").values_list(
        "action", flat=True
    )) == [
        "killswitch.safe_state.failed",
        "killswitch.safe_state.failed",
        "killswitch.safe_state.gave_up",
    ]  # fmt: skip
    assert "given up after 2 attempts" in trail.get(action="killswitch.safe_state.gave_up").message


def test_a_safe_state_receiver_refusing_with_a_4xx_is_given_up_at_once(
    owners: Any,
    gated: Any,  # noqa: F811
    receiver: Receiver,
    engage: Any,
) -> None:
    with_webhook(owners, gated.agent, receiver.url("/gone"))
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)
    [action] = SafeStateAction.objects.filter(kill=kill)
    receiver.status = 404

    assert tasks.safe_state(action.pk) is False  # no retry: trying again would not help

    action.refresh_from_db()
    assert (action.status, action.attempts, action.http_status) == ("gave_up", 1, 404)
    assert AuditEvent.objects.filter(action="killswitch.safe_state.gave_up").exists()


def test_an_unreachable_safe_state_receiver_is_a_retryable_failure(
    owners: Any,
    gated: Any,  # noqa: F811
    engage: Any,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with_webhook(owners, gated.agent, f"http://127.0.0.1:{port}/safe")
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)
    [action] = SafeStateAction.objects.filter(kill=kill)

    with pytest.raises(RetryableDeliveryError, match=r"Could not reach 127\.0\.0\.1"):
        tasks.safe_state(action.pk)

    action.refresh_from_db()
    assert (action.status, action.http_status) == ("failed", None)


# --- idempotency ---------------------------------------------------------------------------------


def test_planning_and_delivering_twice_sends_nothing_twice(
    owners: Any,
    gated: Any,  # noqa: F811
    receiver: Receiver,
    engage: Any,
    mailoutbox: list[Any],
) -> None:
    with_webhook(owners, gated.agent, receiver.url("/safe"))
    add_channel(owners, "slack", receiver.url("/slack"))
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)
    first = after_kill_plan(kill_id=kill.pk)

    assert after_kill_plan(kill_id=kill.pk) == first  # Celery or the hook ran again: no new rows
    notice_ids, action_ids = first
    for _ in range(2):
        for notice_id in notice_ids:
            tasks.notify(notice_id)
        for action_id in action_ids:
            tasks.safe_state(action_id)

    assert len(mailoutbox) == 1
    assert sorted(request.path for request in receiver.requests) == ["/safe", "/slack"]
    assert KillNotice.objects.filter(kill=kill).count() == 2
    assert set(KillNotice.objects.values_list("status", "attempts")) == {("sent", 1)}
    assert SafeStateAction.objects.get().attempts == 1
    assert after_kill_plan(kill_id=kill.pk) == ([], [])  # all sent: nothing left to queue


def test_a_disabled_channel_gives_its_planned_notice_up(
    owners: Any,
    gated: Any,  # noqa: F811
    receiver: Receiver,
    engage: Any,
) -> None:
    channel = add_channel(owners, "slack", receiver.url("/slack"))
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)
    channel_services.channel_set_enabled(actor=owners.admin, channel=channel, enabled=False)
    notice = KillNotice.objects.get(kill=kill, kind="slack")

    assert tasks.notify(notice.pk) is False

    notice.refresh_from_db()
    assert notice.status == "gave_up" and "disabled" in notice.last_error
    assert receiver.requests == []


def test_the_incident_shows_notices_with_webhook_urls_shortened(
    owners: Any,
    gated: Any,  # noqa: F811
    engage: Any,
) -> None:
    add_channel(owners, "slack", "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX")
    kill = engage(actor=owners.owner, scope="agent", agent=gated.agent)

    rows = selectors.kill_notices(kill=kill)

    assert [(row.kind, row.target, row.status) for row in rows] == [
        ("email", "alice@example.com", "queued"),
        ("slack", "https://hooks.slack.com/services/T000/B…", "queued"),
    ]  # the rest of a Slack URL is the credential
    page = console_client(owners.admin).get(reverse("killswitch:detail", args=[kill.pk]))
    assert page.status_code == 200


# --- the registry's safe-state webhook fields ----------------------------------------------------


def test_the_agent_form_sets_the_webhook_and_secret_and_never_shows_the_secret_back(
    org: Any,
) -> None:
    agent = make_agent(org.claims, org.owner, "claims-triage")
    client = console_client(org.owner)
    edit = reverse("registry:agent-edit", args=[agent.slug])
    form = {
        "name": agent.name, "mission": agent.mission, "department": "claims", "team": "",
        "status": "active", "autonomy_level": "1", "environments": ["dev", "prod"],
        "failure_posture": "fail_closed", "providers": "", "tags": "", "parameters": "{}",
        "instructions": "", "shutdown_action": "Drain the queue.",
        "shutdown_webhook": "https://agents.example.com/claims/safe-state",
    }  # fmt: skip

    missing = client.post(edit, form)
    assert missing.status_code == 400
    assert "Set a signing secret" in missing.content.decode()
    ftp = client.post(edit, {**form, "shutdown_webhook": "ftp://files.example.com/x",
                             "shutdown_webhook_secret": SECRET})  # fmt: skip
    assert ftp.status_code == 400 and "http:// or https://" in ftp.content.decode()

    assert client.post(edit, {**form, "shutdown_webhook_secret": SECRET}).status_code == 302
    agent.refresh_from_db()
    assert agent.shutdown_webhook == "https://agents.example.com/claims/safe-state"
    assert agent.shutdown_webhook_secret == SECRET
    for page in (edit, agent.get_absolute_url()):
        body = client.get(page).content.decode()
        assert "https://agents.example.com/claims/safe-state" in body
        assert SECRET not in body
    assert "A secret is set" in client.get(edit).content.decode()

    # Saved again with the secret left empty: it is kept.
    assert client.post(edit, {**form, "shutdown_action": "Drain it."}).status_code == 302
    agent.refresh_from_db()
    assert (agent.shutdown_action, agent.shutdown_webhook_secret) == ("Drain it.", SECRET)


def test_the_api_takes_the_webhook_and_a_write_only_secret(org: Any) -> None:
    agent = make_agent(org.claims, org.owner, "claims-triage")
    client = api_client(org.owner)
    url = f"/api/v1/agents/{agent.slug}/"

    no_secret = client.patch(
        url, {"shutdown": {"webhook": "https://a.example.com/s"}}, format="json"
    )
    ftp = client.patch(
        url, {"shutdown": {"webhook": "ftp://a.example.com/s", "webhook_secret": SECRET}},
        format="json",
    )  # fmt: skip
    response = client.patch(
        url, {"shutdown": {"webhook": "https://a.example.com/s", "webhook_secret": SECRET}},
        format="json",
    )  # fmt: skip

    assert no_secret.status_code == 400
    assert "shutdown_webhook_secret" in no_secret.json()["error"]["details"]
    assert ftp.status_code == 400 and "shutdown" in ftp.json()["error"]["details"]
    assert response.status_code == 200, response.json()
    assert response.json()["shutdown"] == {
        "action": "", "contact": "", "notes": "", "webhook": "https://a.example.com/s",
    }  # fmt: skip
    assert SECRET not in response.content.decode()
    assert SECRET not in client.get(url).content.decode()
    agent.refresh_from_db()
    assert agent.shutdown_webhook_secret == SECRET
    # Another change leaves the secret as it is.
    client.patch(url, {"shutdown": {"contact": "ops@example.com"}}, format="json")
    agent.refresh_from_db()
    assert agent.shutdown_webhook_secret == SECRET


MANIFEST = """\
apiVersion: tether/v1
kind: Agent
metadata: {slug: claims-triage, name: Claims triage}
spec:
  mission: Sort incoming claims.
  owner: alice
  department: claims
  shutdown:
    action: Drain the queue.
    webhook: https://agents.example.com/claims/safe-state
%s"""


def test_a_manifest_sets_the_webhook_its_export_omits_the_secret_and_applying_it_keeps_it(
    org: Any,
) -> None:
    with pytest.raises(ManifestError, match="signing secret"):
        manifest_apply(actor=org.owner, text=MANIFEST % "")

    manifest_apply(actor=org.owner, text=MANIFEST % f"    webhook_secret: {SECRET}\n")

    agent = Agent.objects.get(slug="claims-triage")
    assert agent.shutdown_webhook == "https://agents.example.com/claims/safe-state"
    assert agent.shutdown_webhook_secret == SECRET
    exported = manifest_export(user=org.owner)
    assert "webhook: https://agents.example.com/claims/safe-state" in exported
    assert SECRET not in exported and "webhook_secret" not in exported
    assert {c.action for c in manifest_apply(actor=org.owner, text=exported).changes} == {
        "unchanged"
    }
    assert manifest_export(user=org.owner) == exported
    agent.refresh_from_db()
    assert agent.shutdown_webhook_secret == SECRET  # left out: kept

    rotated = manifest_apply(
        actor=org.owner, text=MANIFEST % "    webhook_secret: another-long-secret-42\n"
    )
    assert [(c.action, c.fields) for c in rotated.changes] == [("update", ["shutdown"])]
    agent.refresh_from_db()
    assert agent.shutdown_webhook_secret == "another-long-secret-42"
    trail = json.dumps(list(AuditEvent.objects.values("before", "after", "message")))
    assert SECRET not in trail and "another-long-secret-42" not in trail
    updates = AuditEvent.objects.filter(
        action="registry.agent.updated", target_repr="claims-triage"
    )
    assert updates.count() == 1  # the new secret is audited, by its fingerprint only


def test_a_manifest_refuses_a_webhook_that_is_not_http_naming_the_path(org: Any) -> None:
    text = MANIFEST.replace("https://agents", "ftp://agents") % f"    webhook_secret: {SECRET}\n"
    with pytest.raises(ManifestError) as refused:
        manifest_apply(actor=org.owner, text=text)
    problems = refused.value.problems
    assert [p["path"] for p in problems] == ["spec.shutdown.webhook"]
    assert re.search(r"http:// or https://", problems[0]["message"])
