"""Retries, backoff and failure postures: an error never becomes an allow unless the agent's
registered posture says so, and then it is logged."""

from __future__ import annotations

import logging

import httpx
import pytest
import tether
from tether import _base

from .fakes import AGENT_KEY, URL, FakeTether, decision, error

CONNECT_ERROR = httpx.ConnectError("connection refused")


def make_client(fake: FakeTether, sleeps: list[float], **options) -> tether.Client:
    client = tether.Client(URL, AGENT_KEY, transport=httpx.MockTransport(fake), **options)
    client._sleep = sleeps.append
    return client


@pytest.fixture
def sleeps() -> list[float]:
    return []


def test_connection_errors_are_retried_with_exponential_backoff(sleeps) -> None:
    fake = FakeTether()
    fake.queue("decisions/", CONNECT_ERROR, CONNECT_ERROR, CONNECT_ERROR)
    client = make_client(fake, sleeps, retries=3, backoff=0.2)
    with client.run("Triage") as run:
        assert run.check_tool("crm-lookup", {"id": "c-42"}).disposition == "allow"
    assert len(fake.sent("decisions/")) == 4
    # About backoff * 2**attempt, jittered between half and all of it.
    assert [round(s / (0.2 * 2**n), 2) >= 0.5 for n, s in enumerate(sleeps)] == [True] * 3
    assert [s <= 0.2 * 2**n for n, s in enumerate(sleeps)] == [True] * 3


def test_server_errors_are_retried(sleeps) -> None:
    fake = FakeTether()
    fake.queue("decisions/", httpx.Response(503), httpx.Response(500))
    client = make_client(fake, sleeps)
    with client.run("Triage") as run:
        run.check_tool("crm-lookup", {"id": "c-42"})
    assert len(fake.sent("decisions/")) == 3


@pytest.mark.parametrize(
    ("status", "code", "raised"),
    [
        (400, "invalid", tether.BadRequest),
        (413, "too_large", tether.BadRequest),
        (401, "not_authenticated", tether.Unauthorized),
        (403, "forbidden", tether.Forbidden),
        (404, "not_found", tether.ApiError),
    ],
)
def test_client_errors_are_not_retried_and_raise_their_own_error(
    sleeps, status, code, raised
) -> None:
    fake = FakeTether()
    fake.queue("decisions/", error(status, code, "Nope.", field=["bad"]))
    client = make_client(fake, sleeps)
    with client.run("Triage") as run, pytest.raises(raised) as caught:
        run.check_tool("crm-lookup", {"id": "c-42"})
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.details == {"field": ["bad"]}
    assert len(fake.sent("decisions/")) == 1
    assert sleeps == []


def test_an_unreachable_tether_fails_closed_by_default(sleeps, caplog) -> None:
    fake = FakeTether()
    fake.queue("decisions/", *[CONNECT_ERROR] * 4)
    client = make_client(fake, sleeps, retries=3)
    with client.run("Triage") as run, pytest.raises(tether.TetherUnavailable) as caught:
        run.check_tool("crm-lookup", {"id": "c-42"}, action="read")
    assert isinstance(caught.value, tether.Denied)
    assert caught.value.reasons == ("store_unavailable",)
    assert caught.value.decision.local
    assert isinstance(caught.value.cause, httpx.ConnectError)
    assert len(fake.sent("decisions/")) == 4
    assert len(sleeps) == 3


def test_persistent_server_errors_fail_closed_too(sleeps) -> None:
    fake = FakeTether()
    fake.queue("decisions/", *[httpx.Response(502)] * 4)
    client = make_client(fake, sleeps, retries=3)
    with client.run("Triage") as run, pytest.raises(tether.TetherUnavailable):
        run.check_model("large-model", 10, 10)


def test_read_only_posture_lets_only_reads_through_and_logs_it(sleeps, caplog) -> None:
    fake = FakeTether(posture="read_only")
    fake.queue("decisions/", *[CONNECT_ERROR] * 3)
    client = make_client(fake, sleeps, retries=0)
    with caplog.at_level(logging.WARNING, logger="tether"), client.run("Triage") as run:
        read = run.check_tool("crm-lookup", {"id": "c-42"}, action="read")
        with pytest.raises(tether.TetherUnavailable):
            run.check_tool("crm-update", {"id": "c-42"}, action="update")
        with pytest.raises(tether.TetherUnavailable):
            run.check_memory("notes")
    assert read.disposition == "allow"
    assert read.local
    assert read.id is None
    assert read.reasons == ("store_unavailable",)
    assert read.arguments == {"id": "c-42"}
    assert "crm-lookup:read allowed by the read_only posture" in caplog.text


def test_fail_open_posture_allows_and_logs_a_warning(sleeps, caplog) -> None:
    fake = FakeTether(posture="fail_open")
    fake.queue("decisions/", CONNECT_ERROR, CONNECT_ERROR)
    client = make_client(fake, sleeps, retries=0)
    with caplog.at_level(logging.WARNING, logger="tether"), client.run("Triage") as run:
        tool = run.check_tool("crm-update", {"id": "c-42"}, action="update")
        model = run.check_model("large-model", 10, 10)
    assert tool.disposition == "allow"
    assert tool.local
    assert model.model == "large-model"
    assert "allowed by the fail_open posture" in caplog.text


def test_an_unknown_posture_fails_closed(sleeps, caplog) -> None:
    fake = FakeTether(posture="yolo")
    fake.queue("decisions/", CONNECT_ERROR)
    client = make_client(fake, sleeps, retries=0)
    with client.run("Triage") as run:
        assert run.failure_posture == "fail_closed"
        with pytest.raises(tether.TetherUnavailable):
            run.check_tool("crm-lookup", {"id": "c-42"}, action="read")


def test_a_run_cannot_start_while_tether_is_unreachable(sleeps) -> None:
    fake = FakeTether()
    fake.queue("runs/", *[CONNECT_ERROR] * 3)
    client = make_client(fake, sleeps, retries=2)
    with pytest.raises(tether.TetherUnavailable), client.run("Triage"):
        pytest.fail("the block must not run")


def test_an_unreadable_answer_is_an_error_never_an_allow(sleeps) -> None:
    fake = FakeTether(posture="fail_open")
    fake.queue(
        "decisions/",
        httpx.Response(200, text="<html>proxy login</html>"),
        httpx.Response(200, json={"id": 1, "disposition": "maybe"}),
    )
    client = make_client(fake, sleeps)
    with client.run("Triage") as run:
        with pytest.raises(tether.ProtocolError):
            run.check_tool("crm-lookup", {"id": "c-42"})
        with pytest.raises(tether.ProtocolError, match="maybe"):
            run.check_tool("crm-lookup", {"id": "c-42"})


def test_a_failed_finish_is_logged_and_does_not_mask_the_block(sleeps, caplog) -> None:
    fake = FakeTether()
    fake.queue("finish", *[CONNECT_ERROR] * 4)
    client = make_client(fake, sleeps)
    with caplog.at_level(logging.WARNING, logger="tether"), client.run("Triage") as run:
        pass
    assert "not finished in Tether" in caplog.text
    assert run.state == "running"


def test_usage_that_cannot_be_reported_is_logged_not_raised(sleeps, caplog) -> None:
    fake = FakeTether()
    fake.queue("usage/", *[CONNECT_ERROR] * 4)
    client = make_client(fake, sleeps)
    with caplog.at_level(logging.WARNING, logger="tether"), client.run("Triage") as run:
        reserved = run.check_model("large-model", 10, 10)
        assert run.report_usage(reserved, 5, 5) is None
    assert "usage for decision 7 not reported" in caplog.text


def test_backoff_is_capped() -> None:
    assert _base.retry_delay(0.2, 30) <= _base.MAX_BACKOFF_SECONDS


def test_settings_that_make_no_sense_are_refused() -> None:
    with pytest.raises(tether.ConfigurationError):
        tether.Client(URL, AGENT_KEY, retries=-1)
    with pytest.raises(tether.ConfigurationError):
        tether.Client(URL, AGENT_KEY, timeout=0)


def test_a_deny_is_an_answer_not_an_outage(sleeps) -> None:
    fake = FakeTether(posture="fail_open")
    fake.queue("decisions/", httpx.Response(200, json=decision("deny")))
    client = make_client(fake, sleeps)
    with client.run("Triage") as run, pytest.raises(tether.Denied) as caught:
        run.check_tool("crm-lookup", {"id": "c-42"})
    assert not isinstance(caught.value, tether.TetherUnavailable)
    assert sleeps == []
