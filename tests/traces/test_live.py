"""The ingest side of the live views (apps/traces/live.py), on the real channel layer (Redis
when REDIS_URL is set, as in the test command): one message per watched run or trace per
export, only after the commit, and never a failed ingest because of it."""

from __future__ import annotations

import asyncio
import os

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.utils import timezone

from apps.traces import live
from apps.traces.models import Span

from .runs import make_runner, post, span, start_run

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
    }
}


@pytest.fixture(autouse=True)
def no_quiet_period():
    cache.clear()
    live.forget_quiet()
    yield
    live.forget_quiet()


@pytest.fixture
def runner(org):
    return make_runner(org.owner, org.claims, "claims-triage")


def subscribe(group: str) -> str:
    """A channel in ``group``, as a consumer would hold."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def receive(channel: str) -> dict:
    async def wait() -> dict:
        return await asyncio.wait_for(get_channel_layer().receive(channel), timeout=10)

    return async_to_sync(wait)()


def test_the_groups_of_an_export_are_its_runs_and_its_traces_without_a_run() -> None:
    run_id = "5f0c7c1e-2b1a-4a51-9e2d-1c6f0f4a2b10"
    spans = [
        Span(trace_id="a" * 32, run_id=run_id),
        Span(trace_id="a" * 32, run_id=run_id),
        Span(trace_id="b" * 32, run_id=None),
        Span(trace_id="b" * 32, run_id=None),
    ]
    assert live.touched_groups(spans) == [
        "live.run.5f0c7c1e2b1a4a519e2d1c6f0f4a2b10",
        f"live.trace.{'b' * 32}",
    ]


def test_an_export_wakes_a_watched_run_once_after_the_commit(
    runner, django_capture_on_commit_callbacks
) -> None:
    run = start_run(runner)
    group = live.run_group(run.pk)
    channel = subscribe(group)
    live.interest_renew(group)
    trace_id = os.urandom(16)
    with django_capture_on_commit_callbacks() as callbacks:
        post(runner, *[
            span(f"step {i}", start=timezone.now(), trace_id=trace_id, tether__run__id=str(run.pk))
            for i in range(50)
        ])  # fmt: skip
    # One notification for the whole export, naming the run once, however many spans it had.
    notifications = [c for c in callbacks if getattr(c, "func", None) is live.notify]
    assert len(notifications) == 1
    assert notifications[0].args == ([group],)
    assert notifications[0]() == 1
    assert receive(channel) == {"type": "spans.stored"}


def test_nobody_watching_means_no_message_is_sent(runner) -> None:
    run = start_run(runner)
    assert live.notify([live.run_group(run.pk), live.trace_group("c" * 32)]) == 0


def test_only_the_watched_groups_are_sent_to(runner) -> None:
    watched, unwatched = live.trace_group("d" * 32), live.trace_group("e" * 32)
    channel = subscribe(watched)
    live.interest_renew(watched)
    assert live.notify([watched, unwatched]) == 1
    assert receive(channel)["type"] == "spans.stored"


def test_a_failing_store_never_fails_the_ingest_and_quiets_the_next_exports(
    runner, settings, django_capture_on_commit_callbacks
) -> None:
    run = start_run(runner)
    settings.CACHES = DEAD_REDIS  # the interest keys cannot be read
    with django_capture_on_commit_callbacks(execute=True):
        accepted = post(
            runner,
            span(
                "chat", start=timezone.now(), trace_id=os.urandom(16), tether__run__id=str(run.pk)
            ),
        )
    assert accepted == 1 and Span.objects.filter(run=run).count() == 1
    # Quiet now: the next export does not even try (a page's tick still catches up).
    assert live.notify([live.run_group(run.pk)]) == 0
    assert live._quiet_until > 0
