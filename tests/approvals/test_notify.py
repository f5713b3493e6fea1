"""Notifications of approval requests: planned once per channel and event, sent by the tasks
(called synchronously here), each message linking to the request; webhooks go to a real HTTP
server on 127.0.0.1 and email to Django's locmem outbox."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from apps.accounts.models import User
from apps.accounts.permissions import forget_scope
from apps.accounts.services import role_assign
from apps.approvals import channel_services, notify, tasks
from apps.approvals.constants import Verdict
from apps.approvals.models import (
    ApprovalRequest,
    NotificationChannel,
    NotificationDelivery,
)
from apps.approvals.services import approval_answer
from apps.audit.models import AuditEvent
from apps.common.errors import NotPermitted

from ..clients import console_client
from ..factories import make_user
from .receiver import Receiver, serve_receiver

pytestmark = pytest.mark.django_db

PUBLIC = "https://tether.example.com"


# --- a real webhook receiver ---------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as state:
        yield state


def verify(secret: str, headers: Any, body: bytes, tolerance: int = 300) -> bool:
    """How a receiver checks a Tether webhook (docs/approvals-notifications.md)."""
    timestamp = headers["X-Tether-Timestamp"]
    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(expected, headers["X-Tether-Signature"])


# --- setup ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def public_url(settings: Any) -> None:
    settings.TETHER_PUBLIC_URL = PUBLIC


@pytest.fixture
def people(org: Any, gated: Any) -> Any:
    """Everyone in the personas with an email address (a person without one is never mailed)."""
    for user in (org.owner, org.approver, org.admin, org.finance, org.other_owner, org.outsider):
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])
    return org


@pytest.fixture
def send(django_capture_on_commit_callbacks: Any) -> Any:
    """Run ``approvals.notify`` as a worker would, then ``approvals.deliver`` for each
    delivery it queued (synchronously: the queued callbacks are checked, not run)."""

    def run(approval: ApprovalRequest, event: str) -> list[int]:
        with django_capture_on_commit_callbacks(execute=False) as queued:
            delivery_ids = tasks.notify(str(approval.pk), event)
        assert len(queued) == len(delivery_ids)
        for delivery_id in delivery_ids:
            tasks.deliver(delivery_id)
        return delivery_ids

    return run


def add_channel(org: Any, kind: str, target: str, **extra: Any) -> NotificationChannel:
    return channel_services.channel_create(
        actor=org.admin,
        name=extra.pop("name", f"{kind} {uuid.uuid4().hex[:6]}"),
        kind=kind,
        target=target,
        **extra,
    )


def link(approval: ApprovalRequest) -> str:
    return f"{PUBLIC}/approvals/{approval.pk}/"


def ask(gated: Any) -> ApprovalRequest:
    decision = gated.ask(reason="Customer was charged twice for order A-1.")
    assert decision.disposition == "ask", decision.reasoning
    return ApprovalRequest.objects.get(pk=decision.approval.pk)


def copy_to(approval: ApprovalRequest, **changes: Any) -> ApprovalRequest:
    """Another request like ``approval`` (say, of another department's agent)."""
    clone = ApprovalRequest.objects.get(pk=approval.pk)
    clone.pk = uuid.uuid4()
    for name, value in changes.items():
        setattr(clone, name, value)
    clone.save(force_insert=True)
    return clone


def recipients(outbox: list[Any]) -> list[str]:
    return sorted(address for message in outbox for address in message.to)


# --- queueing ------------------------------------------------------------------------------------


def queued(task_name: str) -> list[tuple[Any, ...]]:
    """The arguments of each ``task_name`` message waiting in the real broker (Redis; the
    test's database is flushed before each test, so only this test's messages are there)."""
    import base64
    import json

    import redis
    from django.conf import settings

    found = []
    for raw in redis.Redis.from_url(settings.CELERY_BROKER_URL).lrange("celery", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == task_name:
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append(tuple(args))
    return found


def test_a_gated_step_queues_the_notify_task_with_the_request_id_once_it_commits(
    gated: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        approval = ask(gated)
        assert queued("approvals.notify") == []  # nothing before the commit
    for callback in callbacks:
        callback()

    assert queued("approvals.notify") == [(str(approval.pk), "created")]
    assert all(isinstance(arg, str) for arg in queued("approvals.notify")[0])  # ids only


# --- what each channel receives ------------------------------------------------------------------


def test_a_slack_channel_gets_a_mrkdwn_section_and_a_button_to_the_request(
    people: Any, gated: Any, receiver: Receiver, send: Any
) -> None:
    add_channel(people, "slack", receiver.url("/slack"))
    approval = ask(gated)

    send(approval, "created")

    [request] = receiver.requests
    assert request.path == "/slack"
    assert request.headers["Content-Type"] == "application/json"
    message = request.json
    assert set(message) == {"text", "blocks"}
    assert "refunds-agent" in message["text"] and link(approval) in message["text"]
    section, actions = message["blocks"]
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    text = section["text"]["text"]
    for fact in (
        "refunds-agent",  # who
        f"v{approval.agent_version}",
        "alice",  # owner
        "rita",  # on behalf of
        "payments-refund.create",  # what
        "Critical",
        "needs 2 approvers",
        "Customer was charged twice for order A-1.",  # why
        approval.blast_radius["summary"],
        "Deadline",
    ):
        assert fact in text, fact
    assert f"<{link(approval)}|" in text
    assert actions["type"] == "actions"
    [button] = actions["elements"]
    assert button["type"] == "button" and button["url"] == link(approval)


def test_a_generic_webhook_is_signed_and_a_receiver_can_verify_the_signature(
    people: Any, gated: Any, receiver: Receiver, send: Any
) -> None:
    channel = add_channel(people, "webhook", receiver.url(), secret="s3cret-s3cret-s3cret")
    approval = ask(gated)

    [delivery_id] = [
        d
        for d in send(approval, "created")
        if NotificationDelivery.objects.get(pk=d).channel == channel
    ]

    [request] = receiver.requests
    assert verify("s3cret-s3cret-s3cret", request.headers, request.body)
    assert not verify("another-secret-entirely", request.headers, request.body)
    assert not verify("s3cret-s3cret-s3cret", request.headers, request.body + b" ")
    assert request.headers["X-Tether-Event"] == "created"
    assert request.headers["X-Tether-Delivery"] == str(delivery_id)
    body = request.json
    assert body["type"] == "tether.approval.created"
    assert body["id"] == f"{approval.pk}:created"
    assert body["url"] == link(approval)
    assert body["approval"]["id"] == str(approval.pk)
    assert body["approval"]["url"] == link(approval)
    assert body["approval"]["agent"] == {
        "slug": "refunds-agent",
        "name": "Refunds",
        "version": approval.agent_version,
    }
    assert (body["approval"]["owner"], body["approval"]["on_behalf_of"]) == ("alice", "rita")
    assert (body["approval"]["tool"], body["approval"]["action"]) == ("payments-refund", "create")
    assert body["approval"]["risk_class"] == "critical"
    assert body["approval"]["blast_radius_summary"] == approval.blast_radius["summary"]
    assert "arguments" not in body["approval"]  # they stay behind the link


def test_every_message_carries_the_absolute_link_to_the_request(
    people: Any, gated: Any, receiver: Receiver, send: Any, mailoutbox: list[Any]
) -> None:
    add_channel(people, "email", "risk@example.com, oncall@example.com", name="Risk team")
    add_channel(people, "slack", receiver.url("/slack"))
    add_channel(people, "webhook", receiver.url("/hook"))
    approval = ask(gated)

    send(approval, "created")

    assert len(receiver.requests) == 2
    for request in receiver.requests:
        assert link(approval) in request.body.decode()
    # The risk team's one message, and one to each approver in scope (carol and dave).
    assert recipients(mailoutbox) == [
        "carol@example.com",
        "dave@example.com",
        "oncall@example.com",
        "risk@example.com",
    ]
    for message in mailoutbox:
        assert link(approval) in message.body
        [(html, mimetype)] = message.alternatives
        assert mimetype == "text/html" and f'href="{link(approval)}"' in html
        assert message.subject.startswith("[Tether] Approval needed: refunds-agent")
        assert "Customer was charged twice" in message.body


def test_a_redelivered_task_sends_nothing_twice(
    people: Any, gated: Any, receiver: Receiver, send: Any, mailoutbox: list[Any]
) -> None:
    add_channel(people, "slack", receiver.url("/slack"))
    approval = ask(gated)
    first = send(approval, "created")
    assert len(first) == 2  # the Slack channel and the approvers in scope
    sent = (len(receiver.requests), len(mailoutbox))

    assert send(approval, "created") == []  # Celery delivered notify again: nothing new planned
    for delivery_id in first:  # and deliver again, too
        assert tasks.deliver(delivery_id) is False

    assert (len(receiver.requests), len(mailoutbox)) == sent == (1, 2)
    assert NotificationDelivery.objects.filter(approval=approval).count() == 2
    assert set(NotificationDelivery.objects.values_list("status", "attempts")) == {("sent", 1)}


def test_a_failing_receiver_is_recorded_as_failed_and_retried_until_it_answers(
    people: Any, gated: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    channel = add_channel(people, "webhook", receiver.url())
    approval = ask(gated)
    with django_capture_on_commit_callbacks(execute=False):
        tasks.notify(str(approval.pk), "created")
    delivery = NotificationDelivery.objects.get(channel=channel)
    receiver.status = 500

    with pytest.raises(notify.RetryableDeliveryError):  # called directly, Celery re-raises it
        tasks.deliver(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.sent_at) == ("failed", 1, None)
    assert "HTTP 500" in delivery.last_error and "receiver is down" in delivery.last_error

    receiver.status = 204
    assert tasks.deliver(delivery.pk) is True  # the retry

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("sent", 2, "")
    assert delivery.sent_at is not None
    assert len(receiver.requests) == 2
    assert receiver.requests[0].headers["X-Tether-Delivery"] == str(delivery.pk)
    assert receiver.requests[0].json["id"] == receiver.requests[1].json["id"]  # same event id


def test_after_the_last_retry_a_failing_delivery_is_given_up(
    people: Any, gated: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    channel = add_channel(people, "slack", receiver.url())
    approval = ask(gated)
    with django_capture_on_commit_callbacks(execute=False):
        tasks.notify(str(approval.pk), "created")
    delivery = NotificationDelivery.objects.get(channel=channel)
    NotificationDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=5)
    receiver.status = 503

    tasks.deliver.push_request(retries=tasks.deliver.max_retries)  # the worker's last retry
    try:
        assert tasks.deliver.run(delivery.pk) is False
    finally:
        tasks.deliver.pop_request()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("gave_up", 6)
    assert "HTTP 503" in delivery.last_error
    assert tasks.deliver(delivery.pk) is False  # given up: never sent again
    assert len(receiver.requests) == 1


def test_a_receiver_refusing_with_a_4xx_is_given_up_at_once(
    people: Any, gated: Any, receiver: Receiver, send: Any
) -> None:
    channel = add_channel(people, "webhook", receiver.url("/gone"))
    receiver.status = 404

    send(ask(gated), "created")  # no retry raised: trying again would not help

    delivery = NotificationDelivery.objects.get(channel=channel)
    assert (delivery.status, delivery.attempts) == ("gave_up", 1)
    assert delivery.last_error.startswith("HTTP 404 from 127.0.0.1")


def test_an_unreachable_receiver_is_a_retryable_failure(people: Any, gated: Any) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    channel = add_channel(people, "slack", f"http://127.0.0.1:{port}/hook")
    approval = ask(gated)
    [delivery_id] = [
        pk
        for pk in notify.notifications_plan(approval_id=approval.pk, event="created")
        if NotificationDelivery.objects.get(pk=pk).channel_id == channel.pk
    ]

    with pytest.raises(notify.RetryableDeliveryError, match=r"Could not reach 127\.0\.0\.1"):
        notify.delivery_send(delivery_id=delivery_id)
    assert NotificationDelivery.objects.get(pk=delivery_id).status == "failed"


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_one_delivery_at_once_send_it_once(
    people: Any, gated: Any, receiver: Receiver
) -> None:
    from django.db import connection

    channel = add_channel(people, "webhook", receiver.url())
    approval = ask(gated)
    [delivery_id] = [
        pk
        for pk in notify.notifications_plan(approval_id=approval.pk, event="created")
        if NotificationDelivery.objects.get(pk=pk).channel_id == channel.pk
    ]
    receiver.delay = 0.5  # the first worker is still sending when the second claims
    results: list[bool] = []

    def worker() -> None:
        try:
            results.append(notify.delivery_send(delivery_id=delivery_id))
        finally:
            connection.close()

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=30)

    assert sorted(results) == [False, True]
    assert len(receiver.requests) == 1
    delivery = NotificationDelivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts) == ("sent", 1)


# --- who is told ---------------------------------------------------------------------------------


def test_a_critical_requests_owner_and_requester_are_not_emailed_though_they_are_approvers(
    people: Any, gated: Any, send: Any, mailoutbox: list[Any]
) -> None:
    for user in (people.owner, gated.requester):  # alice owns the agent; the run acts for rita
        role_assign(actor=None, user=user, role="approver", department=people.claims, team=None)
    approval = ask(gated)
    assert approval.risk_class == "critical"

    send(approval, "created")

    assert recipients(mailoutbox) == ["carol@example.com", "dave@example.com"]
    assert all(len(message.to) == 1 for message in mailoutbox)  # each approver their own


def test_the_owner_who_approves_is_emailed_about_a_request_that_is_not_critical(
    people: Any, gated: Any, send: Any, mailoutbox: list[Any]
) -> None:
    role_assign(actor=None, user=people.owner, role="approver", department=people.claims, team=None)
    decision = gated.ask("customer-email", "send", arguments={"to": "c@example.com"})
    approval = ApprovalRequest.objects.get(pk=decision.approval.pk)
    assert approval.risk_class == "high"

    send(approval, "created")

    assert "alice@example.com" in recipients(mailoutbox)


def test_approvers_without_an_email_and_people_outside_the_department_are_not_emailed(
    people: Any, gated: Any, send: Any, mailoutbox: list[Any]
) -> None:
    make_user("paul", ("approver", people.payments), email="paul@example.com")
    User.objects.filter(pk=gated.approver2.pk).update(email="")

    send(ask(gated), "created")

    assert recipients(mailoutbox) == ["carol@example.com"]


def test_an_escalated_request_emails_organisation_wide_approvers_and_admins(
    people: Any, gated: Any, send: Any, mailoutbox: list[Any]
) -> None:
    make_user("olga", ("approver", None), email="olga@example.com")
    approval = ask(gated)
    approval_answer(approval=approval, actor=people.approver, verdict=Verdict.ESCALATE)

    send(approval, "escalated")

    assert recipients(mailoutbox) == ["ada@example.com", "olga@example.com"]
    assert mailoutbox[0].subject.startswith("[Tether] Escalated")
    assert link(approval) in mailoutbox[0].body


def test_an_active_delegate_is_emailed_in_the_approvers_place(
    people: Any, gated: Any, send: Any, mailoutbox: list[Any]
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from apps.approvals.services import delegation_create

    stand_in = make_user("stan", email="stan@example.com")
    now = timezone.now()
    delegation_create(
        actor=people.approver,
        delegator=people.approver,
        delegate=stand_in,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(days=1),
    )

    send(ask(gated), "created")

    assert "stan@example.com" in recipients(mailoutbox)


def test_with_nobody_reachable_in_the_department_the_second_tier_is_emailed(
    people: Any, gated: Any, send: Any, mailoutbox: list[Any]
) -> None:
    User.objects.filter(pk__in=[people.approver.pk, gated.approver2.pk]).update(email="")

    send(ask(gated), "created")

    assert recipients(mailoutbox) == ["ada@example.com"]


def test_a_decision_goes_to_the_channels_but_not_to_the_approvers_inboxes(
    people: Any, gated: Any, receiver: Receiver, send: Any, mailoutbox: list[Any]
) -> None:
    add_channel(people, "slack", receiver.url("/slack"))
    approval = ask(gated)
    approval_answer(
        approval=approval, actor=people.approver, verdict=Verdict.REJECT, comment="Not a duplicate."
    )

    send(approval, "rejected")

    assert mailoutbox == []
    [request] = receiver.requests
    text = request.json["blocks"][0]["text"]["text"]
    assert "Rejected" in text and "carol" in text and "Not a duplicate." in text
    assert link(approval) in text


def test_a_department_channel_only_gets_its_departments_requests(
    people: Any, gated: Any, receiver: Receiver, send: Any
) -> None:
    payments = add_channel(people, "webhook", receiver.url("/payments"), department=people.payments)
    claims = add_channel(people, "webhook", receiver.url("/claims"), department=people.claims)
    everyone = add_channel(people, "webhook", receiver.url("/all"))
    claims_request = ask(gated)
    payments_request = copy_to(claims_request, department=people.payments, team=None)

    send(claims_request, "created")
    send(payments_request, "created")

    heard = sorted((r.path, r.json["approval"]["id"]) for r in receiver.requests)
    assert heard == sorted(
        [
            ("/all", str(claims_request.pk)),
            ("/all", str(payments_request.pk)),
            ("/claims", str(claims_request.pk)),
            ("/payments", str(payments_request.pk)),
        ]
    )
    assert not NotificationDelivery.objects.filter(
        channel=payments, approval=claims_request
    ).exists()
    assert NotificationDelivery.objects.filter(channel=everyone).count() == 2
    assert NotificationDelivery.objects.filter(channel=claims).count() == 1


def test_disabled_channels_are_not_sent_to(
    people: Any, gated: Any, receiver: Receiver, send: Any, mailoutbox: list[Any]
) -> None:
    channel = add_channel(people, "slack", receiver.url())
    channel_services.channel_set_enabled(actor=people.admin, channel=channel, enabled=False)
    builtin = notify.approvers_channel()
    channel_services.channel_set_enabled(actor=people.admin, channel=builtin, enabled=False)

    assert send(ask(gated), "created") == []
    assert receiver.requests == [] and mailoutbox == []


def test_a_channel_disabled_after_planning_gives_its_delivery_up(
    people: Any, gated: Any, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    channel = add_channel(people, "slack", receiver.url())
    with django_capture_on_commit_callbacks(execute=False):
        tasks.notify(str(ask(gated).pk), "created")
    channel_services.channel_set_enabled(actor=people.admin, channel=channel, enabled=False)
    delivery = NotificationDelivery.objects.get(channel=channel)

    assert tasks.deliver(delivery.pk) is False

    delivery.refresh_from_db()
    assert delivery.status == "gave_up" and "disabled" in delivery.last_error
    assert receiver.requests == []


# --- channels: services --------------------------------------------------------------------------


def test_channel_writes_are_admin_only_and_audited_without_the_secret(
    people: Any, receiver: Receiver
) -> None:
    with pytest.raises(NotPermitted):
        channel_services.channel_create(
            actor=people.approver, name="x", kind="slack", target=receiver.url()
        )
    channel = add_channel(people, "webhook", receiver.url("/with/a/long/secret/path?token=abc"))
    channel_services.channel_set_enabled(actor=people.admin, channel=channel, enabled=False)
    channel_services.channel_delete(actor=people.admin, channel=channel)

    events = list(AuditEvent.objects.filter(target_type="notification_channel").order_by("seq"))
    assert [e.action for e in events] == [
        "approval.channel.created",
        "approval.channel.disabled",
        "approval.channel.deleted",
    ]
    assert all(e.actor_name == "ada" for e in events)
    created = events[0].after
    assert created["signed"] is True and "secret" not in created
    assert channel.secret not in json.dumps(created)
    assert "token=abc" not in created["target"] and "secret/path" not in created["target"]


def test_the_built_in_channel_can_be_disabled_but_not_deleted(people: Any) -> None:
    from apps.common.errors import ApplicationError

    builtin = notify.approvers_channel()
    assert notify.approvers_channel() == builtin  # made once
    assert builtin.name == "Approvers in scope" and builtin.enabled

    with pytest.raises(ApplicationError, match="disable it"):
        channel_services.channel_delete(actor=people.admin, channel=builtin)


# --- channels: the console page ------------------------------------------------------------------


def test_the_channel_page_rejects_a_bad_url_with_a_message(people: Any) -> None:
    client = console_client(people.admin)
    response = client.post(
        "/approvals/channels/",
        {"name": "Approvals", "kind": "slack", "target": "hooks.slack.com/services/T0/B0/x"},
    )
    assert response.status_code == 400
    assert "Enter a full http:// or https:// URL" in response.content.decode()
    assert not NotificationChannel.objects.exists()

    response = client.post(
        "/approvals/channels/",
        {"name": "Ops", "kind": "webhook", "target": "ftp://files.example.com/in"},
    )
    assert response.status_code == 400 and "http:// or https://" in response.content.decode()


def test_the_channel_page_rejects_a_bad_email_address_naming_it(people: Any) -> None:
    response = console_client(people.admin).post(
        "/approvals/channels/",
        {"name": "Risk", "kind": "email", "target": "risk@example.com, oncall@"},
    )
    assert response.status_code == 400
    assert "Not an email address: “oncall@”" in response.content.decode()


def test_the_channel_page_is_404_for_anyone_but_an_admin(people: Any, receiver: Receiver) -> None:
    channel = add_channel(people, "slack", receiver.url())
    for user in (people.approver, people.owner, people.auditor, people.outsider):
        forget_scope(user)
        client = console_client(user)
        assert client.get("/approvals/channels/").status_code == 404
        assert client.post("/approvals/channels/", {"name": "x"}).status_code == 404
        for action in ("toggle", "delete", "test"):
            url = f"/approvals/channels/{channel.pk}/{action}/"
            assert client.post(url, {"enabled": "false"}).status_code == 404
    channel.refresh_from_db()
    assert channel.enabled and receiver.requests == []


def test_an_admin_adds_a_webhook_and_sees_its_generated_secret_once(people: Any) -> None:
    client = console_client(people.admin)
    response = client.post(
        "/approvals/channels/",
        {"name": "Ticketing", "kind": "webhook", "target": "https://hooks.example.com/tether"},
    )
    assert response.status_code == 201
    channel = NotificationChannel.objects.get(name="Ticketing")
    assert len(channel.secret) >= 32 and channel.secret in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    assert channel.secret not in client.get("/approvals/channels/").content.decode()


def test_send_test_on_the_page_sends_now_and_shows_the_result(
    people: Any, receiver: Receiver
) -> None:
    channel = add_channel(people, "slack", receiver.url("/slack"), name="#approvals")
    client = console_client(people.admin)

    page = client.post(f"/approvals/channels/{channel.pk}/test/", follow=True).content.decode()

    assert "Sent a test message to #approvals" in page
    [request] = receiver.requests
    assert "Test message from Tether" in request.json["text"]
    assert f"{PUBLIC}/approvals/" in request.json["text"]

    receiver.status = 500
    page = client.post(f"/approvals/channels/{channel.pk}/test/", follow=True).content.decode()
    assert "The test to #approvals failed: HTTP 500" in page
    assert AuditEvent.objects.filter(action="approval.channel.tested").count() == 2


def test_the_page_lists_channels_with_their_last_deliveries(
    people: Any, gated: Any, receiver: Receiver, send: Any
) -> None:
    add_channel(people, "webhook", receiver.url("/hook"), name="Ticketing")
    receiver.status = 404
    send(ask(gated), "created")

    page = console_client(people.admin).get("/approvals/channels/").content.decode()

    assert "Ticketing" in page and "Approvers in scope" in page
    assert "Gave up" in page and "HTTP 404 from 127.0.0.1" in page
    assert "Sent" in page  # the approvers' email
